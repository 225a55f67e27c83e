"""The job package's boundary: every module of vsrealbasicvsr outside `job/` (the front ends
above all: the command line, compare, the page, the Ray driver), and the example scripts, use
only what `vsrealbasicvsr.job` exports (`job.__all__`), never a module inside it or a private
name. Read from the source (ast), so nothing is imported and nothing runs."""

import ast
from pathlib import Path

import pytest

from vsrealbasicvsr import job

PACKAGE = Path(job.__file__).parent.parent
JOB = "vsrealbasicvsr.job"


EXAMPLES = PACKAGE.parent / "examples"


def modules_outside_job() -> list[Path]:
    modules = sorted(path for path in PACKAGE.rglob("*.py") if (PACKAGE / "job") not in path.parents)
    return modules + sorted(EXAMPLES.glob("*.vpy"))


def dotted_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def absolute(module: str | None, level: int, importer: str, is_package: bool) -> str:
    """The absolute name of `from <level dots><module> import ...` written in `importer`."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    base = base[: len(base) - level + (1 if is_package else 0)]
    return ".".join(base + ([module] if module else []))


def crossings(path: Path, text: str | None = None) -> list[str]:
    """Where the module at `path` (or `text` as if it were there) reaches past the job package's
    exports: a job submodule imported, a name imported from the job package that it does not
    export (a private one included), or such a name used as an attribute of the package
    (`job.ffmpeg`, `job._plan`)."""
    tree = ast.parse(path.read_text() if text is None else text, str(path))
    importer, is_package = dotted_name(path), path.name == "__init__.py"
    exported = set(job.__all__)
    found, package_names = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(JOB + "."):
                    found.append(f"line {node.lineno}: import {alias.name}")
                elif alias.name == JOB and alias.asname:
                    package_names.add(alias.asname)
        elif isinstance(node, ast.ImportFrom):
            source = absolute(node.module, node.level, importer, is_package)
            if source.startswith(JOB + "."):
                found.append(f"line {node.lineno}: from {source} import ...")
            elif source == JOB:
                for alias in node.names:
                    if alias.name not in exported:
                        found.append(f"line {node.lineno}: from {JOB} import {alias.name} (not exported)")
            elif source == "vsrealbasicvsr":
                package_names.update(alias.asname or alias.name for alias in node.names if alias.name == "job")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in package_names
            and node.attr not in exported
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr} (not exported)")
    return found


@pytest.mark.parametrize("path", modules_outside_job(), ids=lambda path: str(path.relative_to(PACKAGE.parent)))
def test_modules_outside_the_job_use_only_its_exports(path):
    found = crossings(path)
    assert not found, f"{path.relative_to(PACKAGE.parent)} reaches into the job package: {'; '.join(found)}"


def test_the_scan_sees_each_way_of_reaching_in():
    """The scan itself: each form of crossing is found, the exports are not."""
    text = (
        "from .. import job\n"
        "from ..job import ffmpeg\n"
        "from ..job.progress import ProgressPrinter\n"
        "from vsrealbasicvsr.job import _plan, new_spec\n"
        "import vsrealbasicvsr.job.segments\n"
        "job.run(job._plan)\n"
    )
    found = crossings(PACKAGE / "frontends" / "cli.py", text)
    assert sorted(int(line.split()[1].rstrip(":")) for line in found) == [2, 3, 4, 5, 6], found
