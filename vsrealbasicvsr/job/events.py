"""The job's progress events: what a progress callback of `job.run` (or of a distributed runner)
gets, their kinds, the counts they are made from, and the percentage a front end shows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class ProgressKind(StrEnum):
    """What a `JobProgress` says happened (a str: "started" == ProgressKind.STARTED)."""

    STARTED = "started"  # once, before any frame; frames of segments an earlier run finished are counted
    FRAME = "frame"  # a frame was handed to ffmpeg
    SEGMENT_DONE = "segment_done"  # `segment` has its final name in the work folder
    JOINING = "joining"  # all segments are done; the output is being written


@dataclass(frozen=True)
class JobProgress:
    """What a job's progress callback gets: a `kind` (ProgressKind) and the counts at that moment.
    `frames_done` only grows."""

    kind: ProgressKind
    frames_done: int
    total_frames: int
    segments_done: int
    segment_count: int
    window_frames: int  # frames per window before scene cuts split them
    segment: int | None = None  # the segment of a "frame" or "segment_done"
    window: int | None = None  # the first frame of the window of a "frame" (its RBVSRWindow)
    # Frames' worth of this job's work so far in this process, ahead of `frames_done` within the
    # windows being computed (a function: it moves between events; `engine.progress.JobWork`).
    work: Callable[[], float] | None = None


@dataclass
class ProgressCounts:
    """The counts a job's events carry, kept up to date by whoever writes its segments (the job's
    worker thread, a distributed runner's driver); `event` makes the event of the moment."""

    total_frames: int
    segment_count: int
    window_frames: int
    frames_done: int = 0
    segments_done: int = 0
    work: Callable[[], float] | None = None  # the job's live work (`JobProgress.work`)

    def event(self, kind: ProgressKind, segment: int | None = None, window: int | None = None) -> JobProgress:
        return JobProgress(
            kind,
            self.frames_done,
            self.total_frames,
            self.segments_done,
            self.segment_count,
            self.window_frames,
            segment,
            window,
            self.work,
        )


def percent(frames: float, total: int) -> float:
    """`frames` of `total` in percent (0 to 100; a front end rounds it down to show it)."""
    return 100 * frames / total
