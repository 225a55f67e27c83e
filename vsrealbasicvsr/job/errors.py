"""The errors of a job."""

from __future__ import annotations

from pathlib import Path


class UpscaleError(Exception):
    """A problem with the job that the user can fix; the message says how."""


class WeightsUnavailable(UpscaleError):
    """The model's weights are not installed and could not be fetched (`reason`)."""

    def __init__(self, model: str, reason: str, fallback: str):
        super().__init__(
            f"the weights of {model} are not installed and could not be fetched ({reason}); "
            f"run `vsrealbasicvsr download {model}` where its site is reachable, or use "
            f"the model {fallback}"
        )
        self.model, self.reason, self.fallback = model, reason, fallback


class JobInterrupted(KeyboardInterrupt):
    """KeyboardInterrupt while a job's segments (one window each) were written: `segments_done` of
    `segment_count` are kept in `work`. Raised at once, without waiting for the window being computed."""

    def __init__(self, segments_done: int, segment_count: int, work: Path):
        super().__init__(f"{segments_done} of {segment_count} windows are kept in {work}")
        self.segments_done, self.segment_count, self.work = segments_done, segment_count, work
