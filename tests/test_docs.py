"""The commands that README.md and examples/README.md print work as printed.

Every line of their ```sh blocks runs here, block by block in one folder each, in the environment
a user has after the README's set-up command and `. .venv/bin/activate`, from a folder laid out
like the repository's root, with differences a user would not have, to keep the test short:
- `$VSREALBASICVSR_HOME` holds tiny weights under every model's name (the official RealBasicVSR
  weights cannot be fetched here);
- `examples/` holds the repository's scripts, but a short crop of the sample clip (`SHORT_CLIP`),
  which `make demo` is given through its `DEMO_IN` variable (and a frame of it, `DEMO_FRAME`);
- the placeholders the docs use for the user's own files (`clip.mp4`, `input.mp4`, `my.pth`)
  exist: the short clip and a tiny checkpoint.
A few lines cannot run as they are and are checked for what they claim instead; each such case
is named in `_run_command`.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, TINY_CONFIG, stream_colour

DOCS = [REPO / "README.md", REPO / "examples" / "README.md"]
VENV_BIN = Path(sys.executable).parent
# Placeholders in the docs for the user's own files.
USER_CLIPS = ("clip.mp4", "input.mp4")
USER_CHECKPOINT = "my.pth"
# The command that runs this test; running it here would recurse.
TEST_COMMAND = "make test"
# The sample clip, shortened and cropped (frames, and WIDTH:HEIGHT:LEFT:TOP of ffmpeg's crop):
# enough pixels for the demo's comparison crop (make demo's DEMO_CROP, in output pixels).
SHORT_CLIP = {"frames": 8, "crop": "128:80:56:28"}
# ffmpeg's colour options and the H.273 codes of the names the docs use, in the order of the
# VUI's fields (`stream_colour`).
COLOUR_OPTIONS = {
    "-color_primaries": {"bt709": 1, "smpte170m": 6, "bt2020": 9},
    "-color_trc": {"bt709": 1, "smpte170m": 6, "smpte2084": 16, "arib-std-b67": 18},
    "-colorspace": {"bt709": 1, "smpte170m": 6, "bt2020nc": 9},
    "-color_range": {"tv": 0, "pc": 1},
}


def shell_blocks(path: Path) -> list[list[str]]:
    """The ```sh blocks of `path`, each a list of its commands (continuation lines joined)."""
    blocks = []
    for block in re.findall(r"^```sh\n(.*?)^```", path.read_text(), flags=re.S | re.M):
        commands = [line.strip() for line in block.replace("\\\n", " ").splitlines()]
        blocks.append([command for command in commands if command and not command.startswith("#")])
    return blocks


BLOCKS = [(path.relative_to(REPO).as_posix(), block) for path in DOCS for block in shell_blocks(path)]


def test_the_docs_print_commands():
    # The extraction found the blocks (a changed fence style would otherwise skip them all).
    for path in DOCS:
        assert shell_blocks(path), f"no ```sh blocks found in {path}"
    assert any(TEST_COMMAND in block for _, block in BLOCKS)


@pytest.fixture(scope="module")
def weights_home(tmp_path_factory) -> Path:
    """A weights folder with tiny weights of the right architecture under every model's name."""
    import torch

    from vsrealbasicvsr import models
    from vsrealbasicvsr.weights import registry

    home = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    # each architecture small, with the sizes the weights fix (IconVSR's EDVR frames, the scale)
    tiny = {
        "RealBasicVSRNet": TINY_CONFIG,
        "BasicVSRNet": {"mid_channels": 4, "num_blocks": 1},
        "IconVSRNet": {"mid_channels": 4, "num_blocks": 1},
        "BasicVSRPlusPlusNet": {"mid_channels": 16, "num_blocks": 1},
    }
    for info in registry.MODELS.values():
        sizes = dict(info.config) | tiny[info.architecture]
        torch.save(getattr(models, info.architecture)(**sizes).state_dict(), home / info.filename)
    return home


@pytest.fixture(scope="module")
def short_sample(tmp_path_factory) -> Path:
    """examples/sample.mp4 cut to SHORT_CLIP, audio and colour tags kept."""
    import imageio_ffmpeg

    path = tmp_path_factory.mktemp("sample") / "sample.mp4"
    seconds = SHORT_CLIP["frames"] / 25  # the sample's frame rate
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(REPO / "examples" / "sample.mp4"),
            "-t",
            str(seconds),
            "-vf",
            f"crop={SHORT_CLIP['crop']}",
            "-c:v",
            "libx264",
            "-crf",
            "18",
            "-colorspace",
            "bt709",
            "-color_primaries",
            "bt709",
            "-color_trc",
            "bt709",
            "-c:a",
            "copy",
            str(path),
        ],
        check=True,
    )
    assert _frames(path) == SHORT_CLIP["frames"]
    return path


def _environment(weights_home: Path) -> dict:
    """What `. .venv/bin/activate` gives, plus the tiny weights."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    env["VSREALBASICVSR_HOME"] = str(weights_home)
    return env


def _user_folder(tmp_path: Path, weights_home: Path, short_sample: Path) -> Path:
    """A folder laid out like the repository's root, with the user's placeholder files."""
    from vsrealbasicvsr.weights import registry

    examples = tmp_path / "examples"
    examples.mkdir()
    for path in (REPO / "examples").iterdir():
        (examples / path.name).symlink_to(short_sample if path.name == "sample.mp4" else path)
    for name in USER_CLIPS:
        shutil.copy(short_sample, tmp_path / name)
    shutil.copy(weights_home / registry.MODELS["realbasicvsr"].filename, tmp_path / USER_CHECKPOINT)
    return tmp_path


def _run(command: str, cwd: Path, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
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


@pytest.mark.parametrize("doc, block", BLOCKS, ids=[f"{doc}: {block[0][:50]}" for doc, block in BLOCKS])
def test_printed_commands_work(doc, block, tmp_path, weights_home, short_sample):
    """The block's commands in order, in one folder, as a user types them one after the other."""
    folder = _user_folder(tmp_path, weights_home, short_sample)
    for command in block:
        _run_command(command, folder, _environment(weights_home))


def _run_command(command: str, folder: Path, env: dict) -> None:
    words = shlex.split(command, comments=True)
    if command == TEST_COMMAND:
        return  # this test runs inside `make test` (CI runs it through .ci/run)
    if words[:2] == ["make", "demo"]:
        # The Makefile lives in the repository; the results go to the test's folder.
        env["DEMO_IN"], env["DEMO_OUT"] = str(folder / "examples" / "sample.mp4"), str(folder / "sample_x4.mp4")
        env["DEMO_FRAME"] = str(SHORT_CLIP["frames"] // 2)
        _run(command, REPO, env)
        assert _frames(folder / "sample_x4.mp4") == SHORT_CLIP["frames"]
        assert (folder / "sample_x4_compare.png").is_file()
        return
    if words[:2] == [".", ".venv/bin/activate"]:
        found = _run(f"{command} && command -v vsrealbasicvsr vspipe ffmpeg", REPO, env).stdout.split()
        assert [Path(path).name for path in found] == ["vsrealbasicvsr", "vspipe", "ffmpeg"]
        return
    if words[0] == "vspreview":
        # A Qt program: not installed by the tests. Its arguments are the script's globals, as
        # vspipe's -a gives them: the script must evaluate with them.
        arguments = " ".join(f"-a {shlex.quote(word)}" for word in words[2:])
        _run(f"vspipe --info {arguments} {shlex.quote(words[1])} -", folder, env)
        return
    if words[:2] == ["vsrealbasicvsr", "serve"]:
        # A server runs until Ctrl-C: started on a free port (a default one may be taken where
        # tests run), it must answer at the address it prints, and stop on Ctrl-C.
        _check_server(command, folder, env)
        return
    if any(word.startswith("[") for word in words):
        # A synopsis: every option it shows is one the command takes.
        help_text = _run(f"{words[0]} {words[1]} --help", folder, env).stdout
        for option in re.findall(r"\[(--[\w-]+)", command):
            assert option in help_text, f"{option} of the synopsis is not in `{words[0]} {words[1]} --help`"
        return
    _run(command, folder, env)
    if "ffmpeg" in words and words[-1].endswith(".mkv"):  # a pipe into ffmpeg, which writes words[-1]
        output = folder / words[-1]
        assert _frames(output) == SHORT_CLIP["frames"]
        # The colour the command gives ffmpeg is in the encoded stream itself, not only in the
        # container (options in the wrong place leave the stream "unspecified").
        given = {word: words[at + 1] for at, word in enumerate(words[:-1]) if word in COLOUR_OPTIONS}
        assert given, f"`{command}` gives ffmpeg no colour description; a y4m pipe carries none"
        wanted = tuple(COLOUR_OPTIONS[option][given[option]] for option in COLOUR_OPTIONS)
        assert stream_colour(output) == wanted, command


def _check_server(command: str, folder: Path, env: dict) -> None:
    import signal
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    words = shlex.split(command, comments=True)
    server = subprocess.Popen([*words, "--port", str(port)], cwd=folder, env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        assert f"open http://127.0.0.1:{port}/" in line, line + server.stderr.read()
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
                    assert page.status == 200 and b"vsrealbasicvsr" in page.read()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"`{command}` printed its address but does not answer there")
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0


def test_readme_script_runs(tmp_path, weights_home, short_sample):
    """The README's `.vpy` example, with the user's clip.mp4, gives every frame 4x upscaled."""
    source = re.search(r"## Use in a script\n\n```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert source, "README.md has no python block under 'Use in a script'"
    folder = _user_folder(tmp_path, weights_home, short_sample)
    (folder / "script.vpy").write_text(source.group(1))
    info = _run("vspipe --info script.vpy -", folder, _environment(weights_home)).stdout
    width, height = _size(folder / "clip.mp4")
    assert f"Width: {4 * width}\n" in info and f"Height: {4 * height}\n" in info, info
    assert f"Frames: {_frames(folder / 'clip.mp4')}\n" in info, info
    _run("vspipe script.vpy --", folder, _environment(weights_home))
