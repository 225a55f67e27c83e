"""From a video (or a folder of frames) to an upscaled video: the job behind `vsrealbasicvsr
upscale`, as an API for the command line and the front ends after it (docs/DESIGN.md, "The job API").

- `graph`: the clip graph and its colour (`upscaled_clip`, shared with examples/upscale_yuv.vpy)
- `source`: the input as a clip; `ffmpeg`: finding and running ffmpeg
- `segments`: the segments of whole windows in the work folder, and joining them
- `lock`: one job per output; `job`: the spec, the plan, the run; `progress`: the stderr printer
- `distributed`: the job for a runner that writes its segments elsewhere (`open_job`,
  `write_segment`, `OpenJob.store`/`join`)
"""

from .distributed import OpenJob, SegmentJob, open_job, write_segment
from .errors import JobInterrupted, UpscaleError, WeightsUnavailable
from .job import JobPlan, JobProgress, JobResult, JobSpec, Segment, new_spec, plan, run

__all__ = [
    "JobInterrupted",
    "JobPlan",
    "JobProgress",
    "JobResult",
    "JobSpec",
    "OpenJob",
    "Segment",
    "SegmentJob",
    "UpscaleError",
    "WeightsUnavailable",
    "new_spec",
    "open_job",
    "plan",
    "run",
    "write_segment",
]
