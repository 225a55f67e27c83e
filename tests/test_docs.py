"""The commands that README.md and examples/README.md print work as printed.

Every line of their ```sh blocks runs here, in the environment a user has after the README's
set-up command and `. .venv/bin/activate`, from a folder laid out like the repository's root
(`examples/` is the repository's own), with two differences a user would not have:
- `$VSREALBASICVSR_HOME` holds tiny weights under every model's name, so the commands that use
  installed weights run in seconds (the official RealBasicVSR weights cannot be fetched here);
- the placeholders the docs use for the user's own files (`clip.mp4`, `input.mp4`, `my.pth`)
  exist: the sample clip and a tiny checkpoint.
A few lines cannot run as they are and are checked for what they claim instead; each such case
is named in `_run_command`.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY_CONFIG

DOCS = [REPO / "README.md", REPO / "examples" / "README.md"]
VENV_BIN = Path(sys.executable).parent
# Placeholders in the docs for the user's own files.
USER_CLIPS = ("clip.mp4", "input.mp4")
USER_CHECKPOINT = "my.pth"
# The command that runs this test; running it here would recurse.
TEST_COMMAND = "make test"


def shell_commands(path: Path) -> list[str]:
    """The commands of the ```sh blocks of `path`, continuation lines joined, comments left in."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", path.read_text(), flags=re.S | re.M):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                commands.append(command.strip())
    return commands


COMMANDS = [(path.relative_to(REPO).as_posix(), command) for path in DOCS for command in shell_commands(path)]


def test_the_docs_print_commands():
    # The extraction found the blocks (a changed fence style would otherwise skip them all).
    for path in DOCS:
        assert shell_commands(path), f"no ```sh commands found in {path}"
    assert any(command == TEST_COMMAND for _, command in COMMANDS)


@pytest.fixture(scope="module")
def weights_home(tmp_path_factory) -> Path:
    """A weights folder with tiny weights of the right architecture under every model's name."""
    import torch

    from vsrealbasicvsr import registry
    from vsrealbasicvsr.models import BasicVSRNet, RealBasicVSRNet

    home = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    networks = {"RealBasicVSRNet": RealBasicVSRNet(**TINY_CONFIG), "BasicVSRNet": BasicVSRNet(4, 1)}
    for name, info in registry.MODELS.items():
        torch.save(networks[info.architecture].state_dict(), home / info.filename)
    return home


def _environment(weights_home: Path) -> dict:
    """What `. .venv/bin/activate` gives, plus the tiny weights."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    env["VSREALBASICVSR_HOME"] = str(weights_home)
    return env


def _user_folder(tmp_path: Path, weights_home: Path) -> Path:
    """A folder laid out like the repository's root, with the user's placeholder files."""
    (tmp_path / "examples").symlink_to(REPO / "examples")
    for name in USER_CLIPS:
        shutil.copy(REPO / "examples" / "sample.mp4", tmp_path / name)
    from vsrealbasicvsr import registry

    shutil.copy(weights_home / registry.MODELS["realbasicvsr"].filename, tmp_path / USER_CHECKPOINT)
    return tmp_path


def _run(command: str, cwd: Path, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"`{command}` failed ({result.returncode}):\n{result.stderr[-3000:]}"
    return result


def _frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _size(path: Path) -> tuple[int, int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.width, stream.height


@pytest.mark.parametrize("doc, command", COMMANDS, ids=[f"{doc}: {command[:60]}" for doc, command in COMMANDS])
def test_printed_command_works(doc, command, tmp_path, weights_home):
    env = _environment(weights_home)
    words = shlex.split(command, comments=True)
    if command == TEST_COMMAND:
        pytest.skip("this test runs inside `make test` (CI runs it through .ci/run)")
    if words[:2] == ["make", "demo"]:
        # The Makefile lives in the repository; the result goes to the test's folder.
        env["DEMO_OUT"] = str(tmp_path / "sample_x4.mp4")
        _run(command, REPO, env, timeout=600)
        assert _frames(tmp_path / "sample_x4.mp4") == _frames(REPO / "examples" / "sample.mp4")
        return
    if words[:2] == [".", ".venv/bin/activate"]:
        found = _run(f"{command} && command -v vsrealbasicvsr vspipe ffmpeg", REPO, env).stdout.split()
        assert [Path(path).name for path in found] == ["vsrealbasicvsr", "vspipe", "ffmpeg"]
        return
    if words[0] == "vspreview":
        # A Qt program: not installed by the tests. Its arguments are the script's globals, as
        # vspipe's -a gives them: the script must evaluate with them.
        arguments = " ".join(f"-a {shlex.quote(word)}" for word in words[2:])
        _run(f"vspipe --info {arguments} {shlex.quote(words[1])} -", _user_folder(tmp_path, weights_home), env)
        return
    if any(word.startswith("[") for word in words):
        # A synopsis: every option it shows is one the command takes.
        help_text = _run(f"{words[0]} {words[1]} --help", REPO, env).stdout
        for option in re.findall(r"\[(--[\w-]+)", command):
            assert option in help_text, f"{option} of the synopsis is not in `{words[0]} {words[1]} --help`"
        return
    folder = _user_folder(tmp_path, weights_home)
    _run(command, folder, env)
    if "ffmpeg" in words and "out.mkv" in words:
        assert _frames(folder / "out.mkv") == _frames(REPO / "examples" / "sample.mp4")


def test_readme_script_runs(tmp_path, weights_home):
    """The README's `.vpy` example, with the user's clip.mp4, gives every frame 4x upscaled."""
    source = re.search(r"## Use in a script\n\n```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert source, "README.md has no python block under 'Use in a script'"
    folder = _user_folder(tmp_path, weights_home)
    (folder / "script.vpy").write_text(source.group(1))
    info = _run("vspipe --info script.vpy -", folder, _environment(weights_home)).stdout
    width, height = _size(folder / "clip.mp4")
    assert f"Width: {4 * width}\n" in info and f"Height: {4 * height}\n" in info, info
    assert f"Frames: {_frames(folder / 'clip.mp4')}\n" in info, info
    _run("vspipe script.vpy --", folder, _environment(weights_home))
