"""The job's lock: one job per output (see `lock_work`)."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from .errors import UpscaleError

# The job's advisory lock, in its work folder.
LOCK_NAME = "lock"


def lock_work(work: Path, output: Path) -> int:
    """Creates the work folder if needed and takes the job's lock in it; returns its descriptor.

    An advisory lock (flock) held for the job's whole life, dropped by the kernel when the process
    ends, killed or not: a second job on the same output stops at once, naming the first. The lock
    file goes with the work folder at the end of a job, while still locked; a job that locked the
    removed file in the meantime sees that it is no longer the folder's, and tries again.
    """
    lock_path = work / LOCK_NAME
    for _ in range(10):  # a retry needs another job to remove the folder at that very moment
        try:
            work.mkdir(exist_ok=True)
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except FileNotFoundError:  # the folder went between the two calls
            continue
        except OSError as error:  # e.g. a file where the folder should be, or a link as the lock file
            raise UpscaleError(
                f"cannot lock the job in {work} ({error.strerror}); if no job of {output} runs, "
                f"remove {work}, or choose another output"
            ) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(descriptor)
            os.close(descriptor)
            raise UpscaleError(
                f"another upscale job ({holder}) is writing {output}; wait for it to end, "
                "or stop it and continue its job with --resume"
            ) from None
        opened = os.fstat(descriptor)
        try:
            named = os.stat(lock_path, follow_symlinks=False)
        except FileNotFoundError:
            named = None
        if named is not None and (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino):
            break
        os.close(descriptor)
    else:
        raise UpscaleError(f"cannot lock the job in {work}: other jobs keep removing it; try again")
    os.ftruncate(descriptor, 0)
    holder = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    os.pwrite(descriptor, json.dumps(holder).encode(), 0)
    return descriptor


def _lock_holder(descriptor: int) -> str:
    """ "pid N, started T": the job that holds the lock, as it wrote itself into the lock file."""
    for _ in range(20):  # the holder writes it just after it took the lock
        try:
            holder = json.loads(os.pread(descriptor, 4096, 0))
            return f"pid {holder['pid']}, started {holder['started']}"
        except (ValueError, TypeError, KeyError):
            time.sleep(0.05)
    return "pid unknown"
