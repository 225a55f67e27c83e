"""From a video (or a folder of frames) to an upscaled video: the job behind `vsrealbasicvsr
upscale`, as an API for the command line and the front ends after it (docs/DESIGN.md, "The job API").

The front ends (`vsrealbasicvsr.frontends`: the command line, compare, the page, the Ray
driver) use what this package exports (`__all__`) and nothing else of it: no module inside it,
no private name (tests/test_job_boundary.py checks). What is exported:

- the job: `new_spec` -> `JobSpec`, `plan` -> `JobPlan` (`Segment`s), `run` -> `JobResult`;
  its errors `UpscaleError`, `WeightsUnavailable`, `JobInterrupted`
- its progress: `JobProgress` events of a `ProgressKind`, `percent`; `ProgressPrinter` (the
  command's callback), `Progress` (the live count a callback keeps); `ProgressCounts` (the
  counts a runner that writes the segments keeps, and the events it makes of them)
- distributed runners: `open_job` -> `OpenJob` (`SegmentJob`), `write_segment`, `weights_file`
- what the front ends show or offer: the encoders (`DEFAULT_CODEC`, `DEFAULT_CRF`,
  `CRF_CODECS`), `FOLDER_FPS`, `ffmpeg_exe`, a finished segment's file (`segment_path`)
- reading media as the job does, for `compare`: `open_video_file`, `Colour`
- the job's clip graph, for scripts (examples/upscale_yuv.vpy): `upscaled_clip`

Inside: `spec` (the spec, below the rest), `graph` (the clip graph and its colour), `source` (the input as a clip),
`ffmpeg` (finding and running ffmpeg: every argument list starts in `ffmpeg_command`),
`segments` (the segments of whole windows in the work folder, and joining them), `lock` (one
job per output), `job` (the plan, the run), `events` and `progress`, `distributed`.
"""

from .distributed import OpenJob, SegmentJob, open_job, write_segment
from .errors import JobInterrupted, UpscaleError, WeightsUnavailable
from .events import JobProgress, ProgressCounts, ProgressKind, percent
from .ffmpeg import CRF_CODECS, DEFAULT_CODEC, DEFAULT_CRF, ffmpeg_exe
from .graph import Colour, upscaled_clip
from .job import JobPlan, JobResult, Segment, new_spec, plan, run, weights_file
from .progress import Progress, ProgressPrinter
from .segments import segment_path
from .source import open_video_file
from .spec import FOLDER_FPS, JobSpec

__all__ = [
    "CRF_CODECS",
    "DEFAULT_CODEC",
    "DEFAULT_CRF",
    "FOLDER_FPS",
    "Colour",
    "JobInterrupted",
    "JobPlan",
    "JobProgress",
    "JobResult",
    "JobSpec",
    "OpenJob",
    "Progress",
    "ProgressCounts",
    "ProgressKind",
    "ProgressPrinter",
    "Segment",
    "SegmentJob",
    "UpscaleError",
    "WeightsUnavailable",
    "ffmpeg_exe",
    "new_spec",
    "open_job",
    "open_video_file",
    "percent",
    "plan",
    "run",
    "segment_path",
    "upscaled_clip",
    "weights_file",
    "write_segment",
]
