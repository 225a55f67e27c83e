"""The registry's entries: official names and hashes, sizes that fit the networks, and each
entry downloaded from a local server that serves files by their official names."""

import dataclasses
import hashlib
import http.server
import os
import threading

import pytest
import torch

from vsrealbasicvsr import models
from vsrealbasicvsr.weights import download as download_module
from vsrealbasicvsr.weights import registry

PAYLOAD = os.urandom(4096)


@pytest.mark.parametrize("name", list(registry.MODELS))
def test_each_entry_names_its_official_file_and_hash_prefix(name):
    info = registry.MODELS[name]
    assert info.filename.endswith(f"-{info.sha256_prefix}.pth")
    assert len(info.sha256_prefix) == 8 and int(info.sha256_prefix, 16) >= 0
    assert info.urls[0].startswith(registry.OPENMMLAB + "/") and info.urls[0].endswith("/" + info.filename)
    with torch.device("meta"):
        network = getattr(models, info.architecture)(**dict(info.config))
    assert (network.mid_channels, network.scale) == (info.mid_channels, info.scale)
    assert info.purpose and info.description


def test_the_family_is_listed_with_what_is_not_run_and_why():
    architectures = {info.architecture for info in registry.MODELS.values()}
    assert architectures == {"RealBasicVSRNet", "BasicVSRNet", "IconVSRNet", "BasicVSRPlusPlusNet"}
    assert {info.scale for info in registry.MODELS.values()} == {4, 1}
    assert all(entry.why for entry in registry.UNSUPPORTED)


class OfficialNames(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /<filename> of every registered model, and 404 elsewhere."""

    def do_GET(self):
        if self.path.removeprefix("/") not in {info.filename for info in registry.MODELS.values()}:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def mirror():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OfficialNames)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.mark.parametrize("name", list(registry.MODELS))
def test_each_entry_downloads_by_its_official_name_and_checks_its_hash(name, mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(registry.HOME_ENV, str(tmp_path))
    monkeypatch.setenv(download_module.MIRROR_ENV, mirror)
    with pytest.raises(download_module.DownloadError, match="sha256"):  # the payload is not the official file
        download_module.download(name, source="url", quiet=True)
    assert registry.resolve(name) is None
    info = dataclasses.replace(registry.MODELS[name], sha256_prefix=hashlib.sha256(PAYLOAD).hexdigest()[:8])
    monkeypatch.setitem(registry.MODELS, name, info)
    path = download_module.download(name, source="url", quiet=True)
    assert path == tmp_path / info.filename and path.read_bytes() == PAYLOAD
    assert registry.resolve(name) == path


def test_the_readme_table_lists_each_model_with_its_scale():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name, info in registry.MODELS.items():
        assert (
            f"| `{name}` | " in readme
            and f"| `{name}` | "
            + info.architecture.removesuffix("Net").replace("PlusPlus", "++")
            + f" | x{info.scale} |"
            in readme
        ), name
