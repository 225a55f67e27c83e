"""A job whose segments are written elsewhere: the units of a distributed runner (the Ray runner,
vsrealbasicvsr/frontends/ray_runner.py; docs/SCALING.md).

- `open_job(spec)` on the driver: the job's lock, the work folder, the scene cuts found once and
  job.json, as `run` makes them; its `unit` is what every worker gets.
- `write_segment(unit, index)` on any worker: one segment, written by the code of the
  single-process run (the same clip graph, the same `SegmentWriter`: write, verify the frame
  count, rename), into the job's work folder or a folder of the worker's own.
- `OpenJob.store(index, data)` takes a segment sent back as bytes (verified, then renamed);
  `OpenJob.join()` joins the segments into the output as `run` does.

Windows are aligned from frame 0 and split only at the scene cuts, so a segment (whole windows)
computed anywhere, with the context frames its windows read, equals the one-process run's.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import vapoursynth as vs

from ..safe_files import digest, digest_file, new_file, remove
from .errors import UpscaleError
from .graph import filter_message, output_format, sample_aspect_ratio, scene_cuts, upscaled_clip
from .job import (
    JobResult,
    check_encodable,
    check_weights,
    clip_plan_of,
    note_dropped_metadata,
    open_work,
    record_job,
    say_input_notes,
    weights_file,
    weights_fingerprint,
)
from .lock import check_work, lock_work
from .segments import Segments, SegmentWriter, frames_in_file, join
from .source import open_video
from .spec import JobSpec, segment_length


@dataclass(frozen=True)
class SegmentJob:
    """What writing any segment of a job needs, wherever it runs (it pickles): the spec, the video
    file to decode (`source_file`) and its sha256, its frames, the window of the run, the scene
    cuts the driver found (None without scene detection) and the sha256 of the weights. A node
    reads only a video file and weights of these sha256s."""

    spec: JobSpec
    source: Path
    source_sha256: str
    frames: int
    window: int
    cuts: tuple[int, ...] | None
    weights_sha256: str

    @property
    def segment_frames(self) -> int:
        return segment_length(self.window)

    @property
    def count(self) -> int:
        return -(-self.frames // self.segment_frames)


def write_segment(
    unit: SegmentJob,
    index: int,
    *,
    work: Path | None = None,
    source: Path | None = None,
    checkpoint: Path | None = None,
    frame_done: Callable[[vs.VideoFrame], None] | None = None,
    partial_tag: str = "",
) -> tuple[Path, dict]:
    """Writes segment `index` of the job into `work` (default: the job's work folder, which must
    be this node's too) and returns its final path and {size, sha256}; a whole segment already
    there is kept as it is.

    `source` and `checkpoint` are this node's copies of the video file and of the weights, when
    they do not come from the paths the driver sees. `frame_done` is called with each frame handed
    to ffmpeg; `partial_tag` makes the unfinished file's name this worker's (`SegmentWriter`).
    The video file and the weights are read only when their sha256 is the driver's. UpscaleError
    for what the user can fix."""
    spec = unit.spec if work is None else replace(unit.spec, work=work)
    if not spec.work.is_dir():
        raise UpscaleError(
            f"the work folder {spec.work} is not on this node ({socket.gethostname()}); put the "
            "output in a folder every node mounts at the same path, or send the data through the "
            "runner (e.g. --ray-data object-store)"
        )
    segments = Segments(spec, unit.frames, unit.segment_frames, None)
    final = segments.final_path(index)
    if os.path.lexists(final):  # an earlier try wrote it, then its worker was lost before it said so
        try:
            if frames_in_file(final) == segments.frames_in(index):
                return final, digest(final)
        except OSError:
            pass
        remove(final)
    options = spec.upscale_options | {"max_seq_len": unit.window}
    if checkpoint is not None:
        options["checkpoint"] = str(checkpoint)
    _check_weights_are(weights_file(options), unit.weights_sha256)
    source_path = source or unit.source
    if not source_path.exists():
        raise UpscaleError(
            f"{source_path} is not on this node ({socket.gethostname()}); put the input in a folder "
            "every node mounts at the same path, or send the data through the runner"
        )
    found = digest_file(source_path)[1]
    if found != unit.source_sha256:
        raise UpscaleError(
            f"{source_path} on this node ({socket.gethostname()}) is not the video the job began with "
            f"(sha256 {found[:12]}..., not {unit.source_sha256[:12]}...); the input changed: start the job over"
        )
    clip = open_video(spec, source_path)
    if clip.num_frames != unit.frames:
        raise UpscaleError(
            f"{source_path} has {clip.num_frames} frames on this node ({socket.gethostname()}), "
            f"{unit.frames} where the job began; the input changed: start the job over"
        )
    try:
        upscaled, colour = upscaled_clip(
            clip, rgb_out=spec.folder_out, scene_detect=spec.scene_detect, cuts=unit.cuts, **options
        )
        writer = SegmentWriter(spec, upscaled, colour, sample_aspect_ratio(clip), unit.segment_frames, partial_tag)
        writer.write(index, frame_done or (lambda frame: None), threading.Event())
    except vs.Error as error:
        raise UpscaleError(f"segment {index}: {filter_message(error)}") from None
    return final, writer.written[index]


def _check_weights_are(path: Path, sha256: str) -> None:
    if not path.is_file():
        raise UpscaleError(
            f"the weights {path} are not on this node ({socket.gethostname()}); "
            "send them through the runner, or install them there"
        )
    found = weights_fingerprint(path, None)["sha256"]
    if found != sha256:
        raise UpscaleError(
            f"the weights {path} on this node ({socket.gethostname()}) are not those the job began "
            f"with (sha256 {found[:12]}..., not {sha256[:12]}...); use the same file everywhere"
        )


class OpenJob:
    """A job open on the driver of a distributed run: its work folder locked by this process
    until `join` or `close` (also as a context manager)."""

    def __init__(
        self, spec: JobSpec, lock: int, unit: SegmentJob, segments: Segments, width: int, height: int, fps: Fraction
    ):
        self.spec, self.unit, self.segments = spec, unit, segments
        self.width, self.height, self.fps = width, height, fps  # of the output
        self._lock: int | None = lock

    def pending(self) -> list[int]:
        """The segments the work folder does not hold yet (or holds other bytes of than job.json
        recorded: those are removed, to be computed again)."""
        finished = set(self.segments.check_finished())
        return [index for index in range(self.segments.count) if index not in finished]

    def store(self, index: int, data: bytes) -> Path:
        """Segment `index` sent back as the bytes of its file: written into a new file, its frames
        counted, then given its final name and recorded (UpscaleError when frames are missing)."""
        descriptor, partial = new_file(self.spec.work, f"partial_{index:05d}.", ".received")
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        self.segments.verify_and_rename(partial, index)
        return self.segments.final_path(index)

    def accept(self, index: int, written: dict) -> None:
        """Segment `index` as a worker wrote it into the shared work folder, with the {size, sha256}
        it reported: recorded when the file here has those bytes, else UpscaleError (and removed)."""
        final = self.segments.final_path(index)
        try:
            found = digest(final)
        except OSError:
            found = None
        if found != written:
            remove(final)
            raise UpscaleError(
                f"segment {index} in {self.spec.work} is not what its worker wrote (changed or lost on the "
                "way); continue with --resume to compute it again"
            )
        self.segments.record(index, written)

    def join(self) -> JobResult:
        """The segments (all finished) joined into the output as `run` joins them; the work folder
        goes, the lock with it."""
        if len(self.segments.check_finished()) != self.segments.count:
            raise UpscaleError(
                f"segments in {self.spec.work} changed before the join; continue with --resume to compute them again"
            )
        check_work(self.spec.work, self._lock)
        join(self.spec, self.segments, self.unit.frames, self.fps)
        check_work(self.spec.work, self._lock)
        shutil.rmtree(self.spec.work)  # the lock file with it, still locked: see `lock_work`
        self.close()
        count = self.segments.count
        return JobResult(self.spec.output, self.width, self.height, self.unit.frames, False, count, count)

    def close(self) -> None:
        """Releases the lock; the work folder stays for a resume."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> OpenJob:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_job(spec: JobSpec) -> OpenJob:
    """The job opened for a distributed run: weights fetched when missing, the lock taken, the work
    folder checked as `run` checks it, the scene cuts found (once, here: workers get them and do
    not decode the input up to their frames), the options checked and job.json written."""
    check_weights(spec)
    new_work = not os.path.lexists(spec.work)
    lock = lock_work(spec.work, spec.output)
    try:
        source_path, source, window = open_work(spec, new_work)
        out_format, colour = output_format(source, spec.folder_out)
        # the options, checked as the filter checks them, before the scene cuts' decoding pass
        scale = clip_plan_of(spec, source, [], window).network.scale  # x4, or x1 for restoration models
        width, height = scale * source.width, scale * source.height
        check_encodable(spec, out_format, width, height)
        say_input_notes(spec, source.fps)
        note_dropped_metadata(spec, colour)
        cuts = tuple(scene_cuts(source)) if spec.scene_detect else None
        clip_plan_of(spec, source, list(cuts or []), window)  # and with the cuts
        job_record = record_job(spec, source.num_frames, window)
        source_sha256 = digest_file(source_path)[1]
    except BaseException as error:
        if new_work and isinstance(error, (UpscaleError, KeyboardInterrupt)):  # nothing was done: leave nothing
            shutil.rmtree(spec.work)
        os.close(lock)
        raise
    weights_sha256 = job_record["weights"]["sha256"]
    unit = SegmentJob(spec, source_path, source_sha256, source.num_frames, window, cuts, weights_sha256)
    segments = Segments(spec, source.num_frames, unit.segment_frames, colour, job_record)
    return OpenJob(spec, lock, unit, segments, width, height, source.fps)
