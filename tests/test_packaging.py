"""`pip install vsrealbasicvsr` alone must give a working `vsrealbasicvsr` command: everything the
package imports, and every VapourSynth plugin the command calls, is a dependency, not an extra."""

import ast
import importlib.metadata
import re
import sys
import tomllib

from conftest import REPO

PACKAGE = REPO / "vsrealbasicvsr"
# VapourSynth plugin namespaces the command uses, and the wheels that bring them.
PLUGIN_WHEELS = {"bs": "vapoursynth-bestsource", "scxvid": "vapoursynth-scxvid"}
# Optional features: third-party modules imported only behind an extra, and that extra.
# backend="openvino"; upscale --ray; `vsrealbasicvsr serve`
OPTIONAL_MODULES: dict[str, str] = {
    "openvino": "openvino",
    "ray": "ray",
    "starlette": "web",
    "uvicorn": "web",
    "av": "web",  # the page tells pictures from videos
}


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _imported_modules() -> set[str]:
    """Top-level names of every module the package imports, anywhere in its code."""
    modules = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules


def test_every_third_party_import_is_a_dependency():
    dependencies = {_requirement_name(r) for r in _project()["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    third_party = _imported_modules() - set(sys.stdlib_module_names) - {"vsrealbasicvsr"}
    assert third_party, "no imports found: the scan is broken"
    missing = {}
    for module in sorted(third_party):
        if module in OPTIONAL_MODULES:
            extra = {_requirement_name(r) for r in _project()["optional-dependencies"][OPTIONAL_MODULES[module]]}
            assert module in extra, f"{module} is not in the extra {OPTIONAL_MODULES[module]} that is said to bring it"
            continue
        names = {_requirement_name(name) for name in distributions.get(module, [module])}
        if not names & dependencies:
            missing[module] = sorted(names)
    assert not missing, f"imported but not in [project] dependencies: {missing}"


def test_each_optional_import_is_in_its_extra():
    extras = _project()["optional-dependencies"]
    for module, extra in OPTIONAL_MODULES.items():
        assert module in {_requirement_name(r) for r in extras.get(extra, [])}, (module, extra)


def test_every_plugin_the_command_uses_is_a_dependency():
    dependencies = {_requirement_name(r) for r in _project()["dependencies"]}
    used = set()
    for path in PACKAGE.rglob("*.py"):
        used.update(re.findall(r"""hasattr\(core, ["'](\w+)["']\)""", path.read_text()))
    used.discard("rbvsr")  # our own filter, built by this package
    assert used, "no plugin checks found: the scan is broken"
    unknown = used - PLUGIN_WHEELS.keys()
    assert not unknown, f"plugin namespaces without a known wheel: {unknown}; add them to PLUGIN_WHEELS"
    missing = {PLUGIN_WHEELS[name] for name in used} - dependencies
    assert not missing, f"plugins the command calls but pyproject does not depend on: {missing}"
