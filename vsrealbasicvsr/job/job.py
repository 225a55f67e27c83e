"""The job: what `vsrealbasicvsr upscale` does, as an API other front ends call too.

- `new_spec(...)` checks what was asked (input, output, codec) and makes a `JobSpec`.
- `plan(spec)` works out the windows, scene cuts, segments and memory without weights.
- `run(spec, progress=callback, cancel=event)` runs it: segments of whole windows written to
  a work folder beside the output (`<output>.rbvsr-work/`) under a lock, then joined with the
  input's audio and subtitles into the output. A job run again with `resume` continues from its
  finished segments, and writes the same bytes as one that was never stopped.

docs/DESIGN.md ("The job API") says what a front end calls, what its callback gets, and what is
safe from another thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import vapoursynth as vs

from ..engine.progress import JobWork, counting_into
from ..options import default, fields
from ..safe_files import open_plain, remove
from ..weights.registry import FALLBACK_MODEL
from .errors import JobInterrupted, UpscaleError, WeightsUnavailable
from .events import JobProgress, ProgressCounts, ProgressKind
from .ffmpeg import CRF_CODECS, DEFAULT_CODEC, VIDEO_SUFFIXES, encode_problem, ffmpeg_exe, video_encoders
from .graph import Colour, filter_message, raw_pixel_format, sample_aspect_ratio, scene_cuts, upscaled_clip
from .lock import LOCK_NAME, check_work, lock_work
from .segments import FRAME_NAME, JOB_FILE, SegmentWriter, join, recorded_segment, segment_path, write_job_file
from .source import input_notes, open_source, open_video, source_file
from .spec import SEGMENT_WINDOWS, JobSpec, segment_length

if TYPE_CHECKING:
    from ..engine.plan import ClipPlan

# Frame rates a folder of frames may be given (--fps): what ffmpeg's and VapourSynth's rationals hold.
MAX_FPS, MAX_FPS_DENOMINATOR = 10_000, 1_000_000


def is_folder_output(path: Path) -> bool:
    return path.is_dir() or path.suffix == "" or str(path).endswith(os.sep)


def new_spec(
    input: Path,
    output: Path,
    upscale_options: dict,
    *,
    codec: str = DEFAULT_CODEC,
    crf: int | None = None,
    start: int = 0,
    end: int | None = None,
    fps: Fraction | None = None,
    scene_detect: bool = True,
    quiet: bool = False,
    overwrite: bool = False,
    overwrite_folder: bool = False,
    resume: bool = False,
) -> JobSpec:
    """The job of upscaling `input` into `output` (a video, or a folder of PNG frames when it has no
    extension) with `vsrealbasicvsr.upscale(**upscale_options)`, checked: UpscaleError when it
    cannot be done as asked. `overwrite_folder` is `overwrite` for an output folder that holds
    other files too (they are kept)."""
    if not input.exists():
        raise UpscaleError(f"input {input} does not exist; check the path")
    if not (input.is_file() or input.is_dir()):  # a FIFO or a device would block or never end
        raise UpscaleError(f"input {input} is not a regular file or a folder; pass a video file or a folder of frames")
    folder_out = is_folder_output(output)
    work = output.parent / (output.name + ".rbvsr-work")
    parent = output.resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UpscaleError(f"cannot write into {parent}; choose an output in a folder you can write to")
    if work.is_symlink():
        raise UpscaleError(f"{work} is a link, which the job never follows; remove it, or choose another output")
    overwrite = overwrite or overwrite_folder
    _check_output(input, output, work, folder_out, overwrite, overwrite_folder)
    if not folder_out and output.suffix.lower() not in VIDEO_SUFFIXES:
        raise UpscaleError(
            f"{output} does not end in a video container's extension; use one of {', '.join(VIDEO_SUFFIXES)}, "
            "or no extension for a folder of PNG frames"
        )
    check_fps(fps)
    if not folder_out and codec not in video_encoders():
        raise UpscaleError(
            f"unknown video codec {codec!r} for this ffmpeg ({ffmpeg_exe()}); "
            "use one that `ffmpeg -encoders` lists, e.g. libx264, libx265, libsvtav1, ffv1"
        )
    if crf is not None and (folder_out or codec not in CRF_CODECS):
        target = "PNG frames" if folder_out else codec
        raise UpscaleError(f"--crf applies to {', '.join(CRF_CODECS)}, not to {target}; leave it out")
    if crf is not None and not 0 <= crf <= CRF_CODECS[codec]:
        raise UpscaleError(f"--crf {crf} is out of range for {codec}; use 0 (best) to {CRF_CODECS[codec]}")
    return JobSpec(
        input=input,
        output=output,
        folder_out=folder_out,
        work=work,
        codec=codec,
        crf=crf,
        start=start,
        end=end,
        fps=fps,
        scene_detect=scene_detect,
        upscale_options=dict(upscale_options),
        quiet=quiet,
        overwrite=overwrite,
        resume=resume,
    )


def check_fps(fps: Fraction | None) -> None:
    """UpscaleError unless `fps` is None or a frame rate ffmpeg and VapourSynth can hold."""
    if fps is None:
        return
    if not 0 < fps <= MAX_FPS or fps.denominator > MAX_FPS_DENOMINATOR:
        raise UpscaleError(
            f"--fps {fps} is not a frame rate; use a number above 0 and up to {MAX_FPS}, e.g. 25 or 24000/1001"
        )


def _check_output(
    source: Path, output: Path, work: Path, folder_out: bool, overwrite: bool, overwrite_folder: bool
) -> None:
    """Refuses an output that is the input, or that holds what the job must not replace: a file
    unless --overwrite; in a folder, the frame files (FRAME_NAME) unless --overwrite, other files
    unless --overwrite-folder (the join then replaces only frame files)."""
    if output.exists() and os.path.samefile(source, output):  # also through links
        raise UpscaleError(f"the output {output} is the input {source}; choose another output")
    if work.exists() and source.resolve().is_relative_to(work.resolve()):
        raise UpscaleError(f"the input {source} is inside {work}, the work folder of {output}; move it out first")
    if folder_out and _inside(source, output):
        raise UpscaleError(
            f"the input {source} is inside the output folder {output}, whose frames the job writes; "
            "move the input out, or choose another output folder"
        )
    if overwrite_folder and not folder_out:
        raise UpscaleError(f"--overwrite-folder is for an OUTPUT folder of PNG frames, not {output}; use --overwrite")
    if not output.exists():
        return
    if not folder_out:
        if not overwrite:
            raise UpscaleError(f"{output} exists; pass --overwrite to replace it")
        return
    if not output.is_dir():
        raise UpscaleError(
            f"{output} is a file, but an OUTPUT without an extension is a folder of PNG frames; "
            "give a video OUTPUT its extension (e.g. .mp4), or choose another folder"
        )
    names = sorted(path.name for path in output.iterdir())
    others = [name for name in names if not FRAME_NAME.fullmatch(name)]
    if others and not overwrite_folder:
        raise UpscaleError(
            f"{output} holds files this command does not write (e.g. {others[0]}); choose a new "
            "or empty folder, or pass --overwrite-folder to write the frames beside them"
        )
    if names and not overwrite:
        raise UpscaleError(f"{output} exists; pass --overwrite to replace its frames")


def _inside(source: Path, folder: Path) -> bool:
    """Whether the file or folder `source` lies in `folder` (through links too)."""
    return folder.exists() and source.resolve().is_relative_to(folder.resolve())


def check_weights(spec: JobSpec, fetch: bool = True) -> None:
    """Stops before any work when the model's weights are missing and cannot be fetched
    (`fetch` False: when the model or checkpoint is unknown, and nothing is downloaded)."""
    model, checkpoint = spec.upscale_options.get("model", default("model")), spec.upscale_options.get("checkpoint")
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise UpscaleError(f"checkpoint {checkpoint} does not exist; pass the path of a .pth file")
        return
    from ..weights import registry

    try:
        registry.get(model)
    except ValueError as error:
        raise UpscaleError(str(error)) from None
    if registry.resolve(model) is not None or not fetch:
        return
    from ..weights import download

    try:
        download.download(model, quiet=spec.quiet)
    except download.WeightsFolderError as error:  # no other model or source would help
        raise UpscaleError(str(error)) from None
    except (download.DownloadError, OSError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0].split("; ")[0]
        raise WeightsUnavailable(model, reason, FALLBACK_MODEL) from None


def weights_file(upscale_options: dict) -> Path:
    """The file the job's weights come from: --checkpoint, else the model's installed file."""
    from ..weights import registry

    checkpoint = upscale_options.get("checkpoint")
    return (
        Path(checkpoint)
        if checkpoint is not None
        else registry.installed_path(upscale_options.get("model", default("model")))
    )


def weights_fingerprint(path: Path, recorded: dict | None) -> dict:
    """What the weights file holds (size, sha256), and its path and mtime: the sha256 of the job's
    `recorded` fingerprint is reused while the file's path, size and mtime are those it was taken of."""
    stat = path.stat()
    fingerprint = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if recorded and "sha256" in recorded and all(recorded.get(key) == value for key, value in fingerprint.items()):
        return recorded
    with path.open("rb") as file:
        return {**fingerprint, "sha256": hashlib.file_digest(file, "sha256").hexdigest()}


def _read_job_file(job_file: Path) -> dict | None:
    """The fingerprint an earlier run of the job recorded; {} for an unreadable one (no job's)."""
    if not os.path.lexists(job_file):
        return None
    try:
        descriptor = open_plain(job_file)  # a link or a FIFO there is no job's
        with os.fdopen(descriptor, "rb") as file:
            recorded = json.loads(file.read())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _check_same_job(recorded: dict, fingerprint: dict, work: Path) -> None:
    """Refuses to continue the job in `work` with another input, other options or other weights.
    Options are compared without those at their default, as older job files wrote them too."""
    recorded_options = recorded.get("options")
    if isinstance(recorded_options, dict):
        names = {option.name for option in fields()}
        recorded = {
            **recorded,
            "options": {
                name: value
                for name, value in recorded_options.items()
                if name not in names or value != str(default(name))
            },
        }
    if {**recorded, "weights": None, "segments": None} != {**fingerprint, "weights": None, "segments": None}:
        raise UpscaleError(
            f"the work folder {work} belongs to another job (other input or options); "
            "run the same command as before with --resume, or --overwrite to start over"
        )
    before, now = recorded.get("weights"), fingerprint["weights"]
    before = before if isinstance(before, dict) else {}
    if (before.get("size"), before.get("sha256")) != (now["size"], now["sha256"]):
        was = str(before.get("sha256"))[:12]
        raise UpscaleError(
            f"the weights {now['path']} changed since the job in {work} began (sha256 {was}... then, "
            f"{now['sha256'][:12]}... now); pass --overwrite to start over with these weights, "
            "or put the original weights back and --resume"
        )


def window_of_run(job: JobSpec, source: vs.VideoNode) -> int:
    """Frames per window of the run: max_seq_len, or when that is automatic (0) the plan's, which
    the run then asks for explicitly, so that its segments are whole windows."""
    return (
        job.upscale_options.get("max_seq_len", default("max_seq_len"))
        or _recorded_window(job)
        or clip_plan_of(job, source, cuts=[]).window
    )


def _recorded_window(job: JobSpec) -> int | None:
    """The window an unfinished job's segments were cut with (its job.json), or None: a resumed
    job keeps it, so its segments still fit."""
    recorded = _read_job_file(job.work / JOB_FILE) or {}
    frames = recorded.get("segment_frames")
    if recorded.get("segment_windows") != SEGMENT_WINDOWS or not isinstance(frames, int) or frames < SEGMENT_WINDOWS:
        return None
    return frames // SEGMENT_WINDOWS


def clip_plan_of(job: JobSpec, source: vs.VideoNode, cuts: list[int], max_seq_len: int | None = None):
    """The plan of the job's `Upscale` (on the RGBS clip the job makes) for these scene cuts,
    with `max_seq_len` instead of the job's when given."""
    from ..engine.plan import plan_clip

    options = job.upscale_options | ({"max_seq_len": max_seq_len} if max_seq_len else {})
    try:
        return plan_clip(source.width, source.height, vs.FLOAT, 32, source.num_frames, cuts, **options)
    except ValueError as error:
        raise UpscaleError(filter_message(error)) from None


# -- the plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """Frames [first, end) of the job's output, in the work folder once `done`."""

    index: int
    first: int
    end: int
    done: bool


@dataclass(frozen=True)
class JobPlan:
    """What `run` will do, worked out without weights (`plan`)."""

    spec: JobSpec
    width: int  # of the input; the output is the model's scale times it (clip_plan.network.scale)
    height: int
    format_name: str
    fps: Fraction
    frames: int  # frames [start, end) of the input
    cuts: list[int] | None  # frames that start a scene; None without scene detection
    clip_plan: ClipPlan  # the sizes the engine starts with, and the windows
    segments: list[Segment]

    @property
    def window(self) -> int:
        """Frames per window before scene cuts split them."""
        return self.clip_plan.window

    @property
    def segment_frames(self) -> int:
        return segment_length(self.window)


def segments_of(spec: JobSpec, frames: int, segment_frames: int) -> list[Segment]:
    """The segments of a job of `frames` frames, and which of them its work folder holds (as
    job.json records them; `run` checks their bytes)."""
    recorded = _read_job_file(spec.work / JOB_FILE)
    return [
        Segment(
            index,
            first,
            min(first + segment_frames, frames),
            recorded_segment(recorded, index) is not None and os.path.lexists(segment_path(spec, index)),
        )
        for index, first in enumerate(range(0, frames, segment_frames))
    ]


def plan(spec: JobSpec) -> JobPlan:
    """The job's windows, scene cuts, segments and memory estimate, as `run` makes them; loads no
    weights and writes nothing the job keeps. With scene detection on, decodes the input once to
    find the cuts that split windows."""
    check_weights(spec, fetch=False)
    with tempfile.TemporaryDirectory() as temporary:
        source = open_source(spec, Path(temporary))
        cuts = scene_cuts(source) if spec.scene_detect else None
        clip_plan = clip_plan_of(spec, source, cuts or [], window_of_run(spec, source))
        return JobPlan(
            spec,
            source.width,
            source.height,
            source.format.name,
            source.fps,
            source.num_frames,
            cuts,
            clip_plan,
            segments_of(spec, source.num_frames, segment_length(clip_plan.window)),
        )


# -- the run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobResult:
    """The end of `run`: the output written, or `cancelled` with `segments_done` kept for a resume."""

    output: Path
    width: int
    height: int
    frames: int
    cancelled: bool
    segments_done: int
    segment_count: int


def run(
    spec: JobSpec, progress: Callable[[JobProgress], None] | None = None, cancel: threading.Event | None = None
) -> JobResult:
    """Runs the job; UpscaleError for what the user can fix.

    `progress` is called with each JobProgress, from this thread and from the thread that writes
    the segments. Setting `cancel` (from any thread) stops the job at the next frame handed
    over: the segment being written is dropped, finished ones stay in the work folder for a run
    with `resume`, and JobResult(cancelled=True) comes back once nothing of the job runs any more.
    KeyboardInterrupt in this thread raises JobInterrupted at once instead (see there)."""
    report = progress or (lambda event: None)
    cancel = cancel or threading.Event()
    check_weights(spec)
    new_work = not os.path.lexists(spec.work)
    lock = lock_work(spec.work, spec.output)
    job_work = JobWork()  # the work of this job's engines, and no other's
    try:
        try:
            with counting_into(job_work):
                clip, colour, sar, window, job_record = _prepare(spec, new_work)
        except (UpscaleError, KeyboardInterrupt):
            if new_work:  # nothing was done: leave nothing behind
                shutil.rmtree(spec.work)
            raise
        return _write(spec, lock, clip, colour, sar, window, job_record, report, cancel, job_work)
    finally:
        # At the end of a job the lock file went with the work folder, still locked: see `lock_work`.
        os.close(lock)


def _prepare(spec: JobSpec, new_work: bool):
    """Under the job's lock: the work folder checked (or emptied with `overwrite`), the upscaled
    clip, its colour, the source's sample aspect ratio, the window and job.json's record, written."""
    source_path, source, window = open_work(spec, new_work)
    sar = sample_aspect_ratio(source)
    try:
        clip, colour = upscaled_clip(
            source,
            rgb_out=spec.folder_out,
            scene_detect=spec.scene_detect,
            **(spec.upscale_options | {"max_seq_len": window}),
        )
    except vs.Error as error:
        raise UpscaleError(filter_message(error)) from None
    check_encodable(spec, clip.format.id, clip.width, clip.height)
    say_input_notes(spec, source.fps)
    note_dropped_metadata(spec, colour)
    return clip, colour, sar, window, record_job(spec, clip.num_frames, window)


def say_input_notes(spec: JobSpec, fps: Fraction) -> None:
    """Says on stderr (unless quiet) what the job changes about its input unasked (`input_notes`)."""
    if not spec.quiet:
        for note in input_notes(spec, fps):
            print(f"upscale: {note}", file=sys.stderr)


def check_encodable(spec: JobSpec, format_id: int, width: int, height: int) -> None:
    """UpscaleError before any frame is computed when the output (this size and format) cannot
    be encoded with the job's codec into its container."""
    if spec.folder_out:
        return
    pixel_format, _ = raw_pixel_format(vs.core.std.BlankClip(format=format_id, width=width, height=height, length=1))
    problem = encode_problem(spec.codec, spec.crf, width, height, pixel_format, spec.output.suffix)
    if problem is not None:
        raise UpscaleError(
            f"ffmpeg cannot write {width}x{height} {pixel_format} video with {spec.codec} into "
            f"{spec.output.suffix} ({problem}); choose another --codec or OUTPUT extension (e.g. .mkv with "
            "ffv1), or PNG frames (an OUTPUT without extension)"
        )


def note_dropped_metadata(spec: JobSpec, colour: Colour) -> None:
    """Says on stderr (unless quiet) when the input's HDR metadata cannot reach the output."""
    dropped = colour.hdr_dropped(None if spec.folder_out else spec.codec)
    if dropped and not spec.quiet:
        print(f"upscale: {dropped}", file=sys.stderr)


def open_work(spec: JobSpec, new_work: bool) -> tuple[Path, vs.VideoNode, int]:
    """Under the job's lock: the work folder checked (or emptied with `overwrite`); the video file
    the job decodes (`source_file`), its clip and the window of the run."""
    if not new_work and not spec.resume:
        if not spec.overwrite:
            raise UpscaleError(
                f"an unfinished job of {spec.output} is in {spec.work}; add --resume to continue "
                "it, or --overwrite to start over"
            )
        for entry in spec.work.iterdir():
            if entry.name != LOCK_NAME:
                remove(entry)
    source_path = source_file(spec, spec.work / "source")
    source = open_video(spec, source_path)
    return source_path, source, window_of_run(spec, source)


def record_job(spec: JobSpec, frames: int, window: int) -> dict:
    """Writes the job's record to job.json in the work folder: its fingerprint (input, options,
    weights) and the segments an earlier run recorded as finished ("segments"), after checking
    that one recorded before is the same job's; returns it. Without a job.json, no segment in
    the folder is taken as finished."""
    recorded = _read_job_file(spec.work / JOB_FILE)
    earlier_weights = (recorded or {}).get("weights")
    weights = weights_fingerprint(
        weights_file(spec.upscale_options), earlier_weights if isinstance(earlier_weights, dict) else None
    )
    fingerprint = {**spec.fingerprint(frames, segment_length(window)), "weights": weights}
    if recorded is not None:
        _check_same_job(recorded, fingerprint, spec.work)
    segments = (recorded or {}).get("segments")
    job_record = {**fingerprint, "segments": segments if isinstance(segments, dict) else {}}
    write_job_file(spec.work, job_record)
    return job_record


def _write(
    spec: JobSpec,
    lock: int,
    clip: vs.VideoNode,
    colour,
    sar,
    window: int,
    job_record: dict,
    report: Callable[[JobProgress], None],
    cancel: threading.Event,
    job_work: JobWork,
) -> JobResult:
    """The segments not yet in the work folder, written by a worker thread, then checked again
    (a segment that changed meanwhile is computed again, once) and joined."""
    writer = SegmentWriter(spec, clip, colour, sar, segment_length(window), job_record=job_record)
    finished = set(writer.check_finished())
    counts = ProgressCounts(
        clip.num_frames,
        writer.count,
        window,
        sum(writer.frames_in(index) for index in finished),
        len(finished),
        work=job_work.frames,
    )
    report(counts.event(ProgressKind.STARTED))
    for _round in range(2):
        pending = [index for index in range(writer.count) if index not in finished]
        stopped = _write_segments(spec, writer, pending, counts, report, cancel, job_work)
        if stopped is not None:
            return stopped
        check_work(spec.work, lock)
        finished = set(writer.check_finished())  # what the join reads: checked again, just before
        if len(finished) == writer.count:
            break
        counts.segments_done = len(finished)
    else:
        raise UpscaleError(
            f"segments in {spec.work} changed again while the job ran; make sure nothing else writes "
            "there, then continue with --resume"
        )
    report(counts.event(ProgressKind.JOINING))
    join(spec, writer, clip.num_frames, clip.fps)
    check_work(spec.work, lock)
    shutil.rmtree(spec.work)  # the lock file with it, still locked: see `lock_work`
    return JobResult(spec.output, clip.width, clip.height, clip.num_frames, False, writer.count, writer.count)


def _write_segments(
    spec: JobSpec,
    writer: SegmentWriter,
    pending: list[int],
    counts: ProgressCounts,
    report: Callable[[JobProgress], None],
    cancel: threading.Event,
    job_work: JobWork,
) -> JobResult | None:
    """Writes the `pending` segments from a worker thread; JobResult(cancelled) when `cancel` stopped it."""
    clip = writer.clip

    def work() -> None:
        try:
            for index in pending:

                def frame_done(frame: vs.VideoFrame, index: int = index) -> None:
                    # a segment computed again (it changed meanwhile) counts its frames once
                    counts.frames_done = min(counts.frames_done + 1, clip.num_frames)
                    report(counts.event(ProgressKind.FRAME, segment=index, window=frame.props.get("RBVSRWindow")))

                if not writer.write(index, frame_done, cancel):
                    return
                counts.segments_done += 1
                report(counts.event(ProgressKind.SEGMENT_DONE, segment=index))
        except BaseException as error:  # noqa: BLE001 - handed to the calling thread
            writer.error = error

    worker = threading.Thread(target=work, name="rbvsr-segments", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.2)  # short waits keep Ctrl-C responsive while frames are computed
            if cancel.is_set():
                # The window in flight would be dropped anyway (a window is the unit of kept
                # work): stop it now rather than at its end.
                job_work.stop_windows()
    except KeyboardInterrupt:
        writer.abort()
        # The VapourSynth threads may be inside a window that takes minutes: do not wait for them.
        raise JobInterrupted(len(writer.finished()), writer.count, spec.work) from None
    done = len(writer.finished())
    if cancel.is_set() and done < writer.count:
        writer.abort()
        return JobResult(spec.output, clip.width, clip.height, clip.num_frames, True, done, writer.count)
    if writer.error is not None:
        writer.abort()
        if isinstance(writer.error, vs.Error):
            raise UpscaleError(
                f"{filter_message(writer.error)}; finished segments are kept in {spec.work}, continue with --resume"
            ) from None
        raise writer.error
    return None
