"""The page's picture of a job: its latest upscaled frame beside the same input frame upscaled 4x
by bicubic, at full output resolution (a centre crop of large frames), made with
`vsrealbasicvsr compare` from the newest finished segment in the job's work folder (or from the
output once the job is done). Made on request, kept in `<job>/preview.png` until a newer
segment is done.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from ...job import UpscaleError, segment_path
from .. import compare
from . import jobs as web_jobs

# The largest crop shown, in output pixels: enough to judge detail, small enough for a page.
MAX_CROP = (960, 540)
PICTURE_NAME, ABOUT_NAME = "preview.png", "preview.json"
_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()


def _source(jobs: Path, job: dict) -> tuple[Path, int, int, str] | None:
    """(upscaled file, its first frame in the output, its frames, what it is) of the newest
    upscaled frames: the newest finished segment, or the output of a job that is done."""
    output = web_jobs.output_path(jobs, job)
    frames = job["info"]["frames"]
    if job["state"] == "done" and output.is_file():
        return output, 0, frames, "done"
    plan = job.get("plan") or {}
    segment_frames = plan.get("segment_frames")
    if not segment_frames:
        return None
    try:
        spec = web_jobs.spec_of(jobs, job)
    except UpscaleError:  # e.g. the output came a moment before the job's row says done
        return None
    for index in reversed(range(-(-frames // segment_frames))):
        path = segment_path(spec, index)
        if path.is_file():
            first = index * segment_frames
            return path, first, min(segment_frames, frames - first), f"segment {index}"
    return None


def preview(jobs: Path, job: dict, label: str) -> dict | None:
    """{"frame": n, "source": ...} of the job's picture (made now when a newer one can be made),
    or None when no upscaled frame is ready yet. The picture is `picture_path`."""
    folder = web_jobs.job_folder(jobs, job["id"])
    picture, about = folder / PICTURE_NAME, folder / ABOUT_NAME
    with _lock_of(job["id"]):
        shown = json.loads(about.read_text()) if about.is_file() and picture.is_file() else None
        found = _source(jobs, job)
        if found is None:
            return shown
        path, first, count, what = found
        frame = first + count - 1
        if shown is not None and shown["frame"] == frame:
            return shown
        width, height = 4 * job["info"]["width"], 4 * job["info"]["height"]
        crop_w, crop_h = min(width, MAX_CROP[0]), min(height, MAX_CROP[1])
        crop = (crop_w, crop_h, (width - crop_w) // 2, (height - crop_h) // 2)
        try:
            compare.compare(Path(job["input"]), path, picture, frame=count - 1, crop=crop, start=first, label=label)
        except (compare.CompareError, OSError):
            # The segment went while being read (the job joined and removed its work folder): the
            # picture shown stays; the next request makes one from the output.
            return shown
        shown = {"frame": frame, "source": what}
        partial = about.with_name(about.name + ".part")
        partial.write_text(json.dumps(shown))
        os.replace(partial, about)
        return shown


def picture_path(jobs: Path, job_id: str) -> Path:
    return web_jobs.job_folder(jobs, job_id) / PICTURE_NAME


def _lock_of(job_id: str) -> threading.Lock:
    with _locks_lock:
        return _locks.setdefault(job_id, threading.Lock())
