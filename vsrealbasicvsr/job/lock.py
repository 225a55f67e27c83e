"""The job's lock: one job per output (see `lock_work`)."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import time
from pathlib import Path

from ..safe_files import UnsafePath, own_folder
from .errors import UpscaleError

# The job's advisory lock, in its work folder.
LOCK_NAME = "lock"


def lock_work(work: Path, output: Path) -> int:
    """Creates the work folder if needed and takes the job's lock in it; returns its descriptor.

    An advisory lock (flock) held for the job's whole life, dropped by the kernel when the process
    ends, killed or not: a second job on the same output stops at once, naming the first. The lock
    file goes with the work folder at the end of a job, while still locked; a job that locked the
    removed file in the meantime sees that it is no longer the folder's, and tries again.

    The work folder is never a link, and the lock file is opened in it without following one
    (`safe_files`): anyone who can write beside the output could have planted either.
    """
    for _ in range(10):  # a retry needs another job to remove the folder at that very moment
        try:
            own_folder(work)
            folder = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                descriptor = os.open(LOCK_NAME, flags, 0o644, dir_fd=folder)
            finally:
                os.close(folder)
        except FileNotFoundError:  # the folder went between the two calls
            continue
        except UnsafePath as error:
            raise UpscaleError(
                f"cannot lock the job in {work}: {error.strerror}; remove it, or choose another output"
            ) from None
        except OSError as error:  # e.g. a file where the folder should be, or a link as the lock file
            raise UpscaleError(
                f"cannot lock the job in {work} ({error.strerror}); if no job of {output} runs, "
                f"remove {work}, or choose another output"
            ) from None
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise UpscaleError(f"{work / LOCK_NAME} is not a plain file; remove it, or choose another output")
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(descriptor)
            os.close(descriptor)
            raise UpscaleError(
                f"another upscale job ({holder}) is writing {output}; wait for it to end, "
                "or stop it and continue its job with --resume"
            ) from None
        if holds_work(work, descriptor):
            break
        os.close(descriptor)
    else:
        raise UpscaleError(f"cannot lock the job in {work}: other jobs keep removing it; try again")
    os.ftruncate(descriptor, 0)
    holder = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    os.pwrite(descriptor, json.dumps(holder).encode(), 0)
    return descriptor


def holds_work(work: Path, descriptor: int) -> bool:
    """Whether the lock file open as `descriptor` is still the one in the folder `work`, and that
    folder is not a link: the work folder is still the one this job locked."""
    try:
        if os.path.islink(work):
            return False
        named = os.stat(work / LOCK_NAME, follow_symlinks=False)
    except OSError:
        return False
    opened = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def check_work(work: Path, descriptor: int) -> None:
    """UpscaleError unless `work` is still the work folder this job locked (`holds_work`)."""
    if not holds_work(work, descriptor):
        raise UpscaleError(
            f"the work folder {work} was moved or replaced while the job ran; nothing more is written "
            "through it: run the job again"
        )


def _lock_holder(descriptor: int) -> str:
    """ "pid N, started T": the job that holds the lock, as it wrote itself into the lock file."""
    for _ in range(20):  # the holder writes it just after it took the lock
        try:
            holder = json.loads(os.pread(descriptor, 4096, 0))
            return f"pid {holder['pid']}, started {holder['started']}"
        except (ValueError, TypeError, KeyError):
            time.sleep(0.05)
    return "pid unknown"
