"""What a job was asked to do (`JobSpec`, made and checked by `job.new_spec`), and how its work
is cut: segments of `SEGMENT_WINDOWS` windows. Below the rest of the package: the source, the
segments and the job itself take a spec."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ..options import without_defaults

# Windows per segment: one, so that an interruption loses at most the window in flight (the
# filter hands over a window's frames only once the whole window is computed, so nothing less
# than a window can be kept). Each segment costs an ffmpeg start and a keyframe at its start.
SEGMENT_WINDOWS = 1
# The frame rate of a folder of frames given without one (--fps).
FOLDER_FPS = Fraction(25)


def segment_length(window: int) -> int:
    """Frames per segment: whole windows of the run (windows are aligned from frame 0 and
    split only inside, at scene cuts, so a segment starts where a window does)."""
    return SEGMENT_WINDOWS * window


@dataclass(frozen=True)
class JobSpec:
    """What a job was asked to do, checked (`new_spec`)."""

    input: Path
    output: Path
    folder_out: bool
    work: Path
    codec: str
    crf: int | None
    start: int
    end: int | None
    fps: Fraction | None  # for image folders (None: FOLDER_FPS)
    scene_detect: bool
    upscale_options: dict
    quiet: bool  # no download progress, no notes on stderr
    overwrite: bool  # start an unfinished job of OUTPUT over (OUTPUT itself is checked in `new_spec`)
    resume: bool

    def fingerprint(self, frames: int, segment_frames: int) -> dict:
        stat = self.input.stat()
        return {
            "input": str(self.input.resolve()),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "frames": frames,
            "segment_frames": segment_frames,
            # Work folders of versions that cut segments of other numbers of windows are not resumed.
            "segment_windows": SEGMENT_WINDOWS,
            "codec": self.codec,
            "crf": self.crf,
            "start": self.start,
            "end": self.end,
            "fps": None if self.fps is None else f"{self.fps.numerator}/{self.fps.denominator}",
            "scene_detect": self.scene_detect,
            "folder_out": self.folder_out,
            "options": _recorded_options(self.upscale_options),
        }


def _recorded_options(upscale_options: dict) -> dict[str, str]:
    """The options as job.json records them: those that differ from their default, as text."""
    return {name: str(value) for name, value in sorted(without_defaults(upscale_options).items())}
