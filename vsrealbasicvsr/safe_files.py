"""Safe file operations for the folders this package writes (docs/DESIGN.md, "Files we write").

Folders we write (the work folder beside an output, a Ray node's copies, the output's folder,
the weights folder) are hostile ground: anyone who can write there may have planted a link,
a FIFO or a file of the same name. So:

- a folder we write into is created by us or checked (`own_folder`): a real folder, not a link,
  of this user (and with `private`, readable by this user only);
- every file we create is new (`new_file`: O_EXCL|O_NOFOLLOW under a fresh name), written in
  full, fsynced and renamed over its final name (`write_new`); the rename replaces whatever
  name was there and never writes through it;
- a final name that must not replace anything is placed with `place_new` (link(2): fails when
  the name exists, as O_EXCL does);
- what we read back is opened without following links, must be a plain file (`open_plain`),
  and is checked against the size and sha256 recorded when it was written (`digest`).

Errors are `UnsafePath` (an OSError) with a one-line message; callers add what to do.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import stat
from pathlib import Path

# Plain reads: no link followed, and a FIFO planted under the name does not block the open.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 20


class UnsafePath(OSError):
    """A path that is not what we write or read there: a link, another kind of file, another's."""


def own_folder(path: Path, private: bool = False) -> os.stat_result:
    """Creates the folder `path` (its parent must exist), or checks the one there: a folder, not
    a link, owned by this user, and with `private` not open to others (created 0700). Returns its
    stat, whose (st_dev, st_ino) `same_folder` checks again later."""
    try:
        os.mkdir(path, 0o700 if private else 0o777)
    except FileExistsError:
        pass
    found = os.lstat(path)
    if stat.S_ISLNK(found.st_mode):
        raise UnsafePath(errno.ELOOP, f"{path} is a link, not a folder of ours (it is never followed)")
    if not stat.S_ISDIR(found.st_mode):
        raise UnsafePath(errno.ENOTDIR, f"{path} is not a folder")
    if found.st_uid != os.geteuid():
        raise UnsafePath(errno.EPERM, f"{path} belongs to another user (uid {found.st_uid})")
    if private and found.st_mode & 0o077:
        raise UnsafePath(errno.EPERM, f"{path} is open to other users (mode {stat.S_IMODE(found.st_mode):o})")
    return found


def same_folder(path: Path, identity: os.stat_result) -> bool:
    """Whether `path` is still the folder `own_folder` returned `identity` for (not a link)."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(found.st_mode) and (found.st_dev, found.st_ino) == (identity.st_dev, identity.st_ino)


def new_file(folder: Path, prefix: str, suffix: str = "", mode: int = 0o666) -> tuple[int, Path]:
    """A new empty file in `folder` under a fresh name, open for writing: O_EXCL|O_NOFOLLOW, so
    never through a link nor into a file that is not ours. `mode` less the umask."""
    while True:
        path = folder / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode), path
        except FileExistsError:
            continue


def new_folder(folder: Path, prefix: str) -> Path:
    """A new empty folder in `folder` under a fresh name (mkdir fails on anything there)."""
    while True:
        path = folder / f"{prefix}{secrets.token_hex(6)}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def fsync_path(path: Path) -> None:
    """Flushes a plain file, or a folder and the plain files in it, to the disk."""
    if path.is_dir() and not path.is_symlink():
        for entry in os.scandir(path):
            if entry.is_file(follow_symlinks=False):
                fsync_path(Path(entry.path))
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_new(path: Path, data: bytes) -> None:
    """`data` as the file `path`: written into a new file beside it, fsynced, renamed over it."""
    descriptor, temporary = new_file(path.parent, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def place_new(source: Path, destination: Path) -> None:
    """Moves the file `source` to `destination`, which must not exist: FileExistsError when
    anything is there, also a link or something that appeared a moment ago (link(2) is atomic)."""
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError as error:  # a file system without hard links: the next best, checked just before
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(destination):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(destination)) from None
        os.rename(source, destination)
        return
    os.unlink(source)


def open_plain(path: Path) -> int:
    """`path` opened for reading when it is a plain file, not a link: else UnsafePath."""
    try:
        descriptor = os.open(path, _READ_FLAGS)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnsafePath(errno.ELOOP, f"{path} is a link, which is never followed") from None
        raise
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise UnsafePath(errno.EINVAL, f"{path} is not a plain file")
    os.set_blocking(descriptor, True)
    return descriptor


def sha256_of_descriptor(descriptor: int) -> tuple[int, str]:
    """(bytes, sha256) of an open file, read from its start."""
    digest, size = hashlib.sha256(), 0
    while chunk := os.pread(descriptor, _CHUNK, size):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def digest(path: Path) -> dict:
    """{"size", "sha256"} of a plain file, or of a folder of plain files (names and contents,
    sorted by name): what a work folder records of a segment it wrote. UnsafePath for a link
    anywhere, or for anything but plain files."""
    found = os.lstat(path)
    if stat.S_ISDIR(found.st_mode):
        total, combined = 0, hashlib.sha256()
        for name in sorted(os.listdir(path)):
            size, sha256 = digest_file(path / name)
            total += size
            combined.update(f"{name}\0{size}\0{sha256}\n".encode())
        return {"size": total, "sha256": combined.hexdigest()}
    size, sha256 = digest_file(path)
    return {"size": size, "sha256": sha256}


def digest_file(path: Path) -> tuple[int, str]:
    """(bytes, sha256) of the plain file `path` (UnsafePath otherwise)."""
    descriptor = open_plain(path)
    try:
        return sha256_of_descriptor(descriptor)
    finally:
        os.close(descriptor)


def remove(path: Path) -> None:
    """Removes `path` without following it: a link goes as a link, a folder with what it holds."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(found.st_mode):
        shutil.rmtree(path)  # rmtree removes links inside as links
    else:
        os.unlink(path)
