"""Segments: the job's frames in runs of whole windows, each encoded by its own ffmpeg into the
work folder, and joined into the output at the end.

A segment gets its final name (`segment_NNNNN`) only when ffmpeg has finished it, it holds all
its frames (counted) and it is on the disk (fsync); its size and sha256 then go into job.json.
A name alone is never trusted: a segment whose bytes do not match job.json (damaged, replaced,
a link, empty, or never recorded) is removed and computed again, on resume and before the join.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import vapoursynth as vs

from ..safe_files import digest, fsync_path, new_file, new_folder, own_folder, place_new, remove, write_new
from .errors import UpscaleError
from .ffmpeg import (
    BITEXACT,
    MP4_SUFFIXES,
    concat_input,
    encoder_options,
    ffmpeg_command,
    ffmpeg_path,
    run_ffmpeg,
    video_packets,
)
from .graph import Colour, raw_pixel_format
from .spec import JobSpec

# The names of the frames a folder output gets (ffmpeg's image2 pattern), and what they match.
FRAME_PATTERN = "%08d.png"
FRAME_NAME = re.compile(r"\d{8}\.png")
# The job's record in its work folder: its fingerprint, and "segments": {index: {size, sha256}}.
JOB_FILE = "job.json"


class Segments:
    """The segments of a job of `frames` frames in its work folder: names, lengths, which are done.

    `job_record` is job.json's content (`record_job`), whose "segments" this object keeps up to
    date; None where no job.json is kept (a distributed runner's worker)."""

    def __init__(self, job: JobSpec, frames: int, segment_frames: int, colour: Colour, job_record: dict | None = None):
        self.job, self.frames, self.segment_frames = job, frames, segment_frames
        self.colour = colour  # of the encoded video or PNG frames
        self.count = -(-frames // segment_frames)
        self.job_record = job_record
        self._record_lock = threading.Lock()  # segments are recorded from a worker thread

    def final_path(self, index: int) -> Path:
        return segment_path(self.job, index)

    def frames_in(self, index: int) -> int:
        return min(self.segment_frames, self.frames - index * self.segment_frames)

    def recorded(self, index: int) -> dict | None:
        """The {size, sha256} job.json holds for segment `index`, or None."""
        return recorded_segment(self.job_record, index)

    def finished(self) -> list[int]:
        """The segments job.json records as finished (checked against their bytes by `check_finished`)."""
        return [index for index in range(self.count) if self.recorded(index) is not None]

    def check_finished(self) -> list[int]:
        """The segments whose bytes are those job.json recorded. Anything else under a segment's
        name (damaged, replaced, a link, empty, not recorded) is removed, and its record with it,
        so that it is computed again; a line on stderr says so."""
        good = []
        for index in range(self.count):
            path, record = self.final_path(index), self.recorded(index)
            if record is not None and self._matches(path, record):
                good.append(index)
                continue
            if os.path.lexists(path):
                remove(path)
                if not self.job.quiet:
                    why = "is not the one this job wrote" if record else "was never recorded as finished"
                    print(f"upscale: segment {index} in {self.job.work} {why}; computing it again", file=sys.stderr)
            if record is not None:
                self._forget(index)
        return good

    @staticmethod
    def _matches(path: Path, record: dict) -> bool:
        try:
            return digest(path) == {"size": record.get("size"), "sha256": record.get("sha256")}
        except OSError:  # missing, a link, not a plain file or folder of them
            return False

    def verify_and_rename(self, partial: Path, index: int) -> dict:
        """Gives the encoded `partial` segment `index` its final name once it holds all its frames
        and is on the disk, and records its {size, sha256} in job.json; returns them. UpscaleError
        (and `partial` removed) when frames are missing."""
        found, expected = frames_in_file(partial), self.frames_in(index)
        if found != expected:
            remove(partial)
            raise UpscaleError(
                f"segment {index} came out with {found} of its {expected} frames; run the job again "
                "with --resume to compute it again"
            )
        fsync_path(partial)
        record = digest(partial)
        final = self.final_path(index)
        remove(final)  # a folder is not replaced by a rename: an earlier try's, unrecorded
        os.replace(partial, final)
        fsync_path(self.job.work)
        self.record(index, record)
        return record

    def record(self, index: int, record: dict) -> None:
        """Segment `index` is finished with these {size, sha256}: into job.json (when kept)."""
        if self.job_record is None:
            return
        with self._record_lock:
            segments = self.job_record.setdefault("segments", {})
            segments[str(index)] = record
            write_job_file(self.job.work, self.job_record)

    def _forget(self, index: int) -> None:
        with self._record_lock:
            self.job_record["segments"].pop(str(index), None)
            write_job_file(self.job.work, self.job_record)


def segment_path(job: JobSpec, index: int) -> Path:
    """Where segment `index` of the job is once finished (a folder of PNG frames for a folder output)."""
    return job.work / (f"segment_{index:05d}" + ("" if job.folder_out else ".nut"))


def recorded_segment(job_record: dict | None, index: int) -> dict | None:
    """The {size, sha256} a job record holds for segment `index`, or None (also for one of another shape)."""
    segments = (job_record or {}).get("segments")
    record = segments.get(str(index)) if isinstance(segments, dict) else None
    if isinstance(record, dict) and isinstance(record.get("size"), int) and isinstance(record.get("sha256"), str):
        return record
    return None


def write_job_file(work: Path, job_record: dict) -> None:
    """job.json in `work`: a new file, on the disk, then renamed over the old one."""
    write_new(work / JOB_FILE, json.dumps(job_record, indent=1).encode())


class SegmentWriter(Segments):
    """Encodes segments of the clip, each through its own ffmpeg, into the work folder.

    `partial_tag` makes the names of unfinished segments unique to this writer (the process of
    a distributed runner's worker), so that two attempts at one segment never write one file."""

    def __init__(
        self,
        job: JobSpec,
        clip: vs.VideoNode,
        colour: Colour,
        sar: Fraction | None,
        segment_frames: int,
        partial_tag: str = "",
        job_record: dict | None = None,
    ):
        super().__init__(job, clip.num_frames, segment_frames, colour, job_record)
        self.clip = clip
        self.sar = sar  # the source's sample aspect ratio, None for square pixels
        self.partial_tag = partial_tag
        self.pixel_format, self.plane_order = raw_pixel_format(clip)
        self.written: dict[int, dict] = {}  # {size, sha256} of each segment this writer finished
        self.process: subprocess.Popen | None = None
        self.partial: Path | None = None
        self.error: BaseException | None = None
        # Between the worker starting an ffmpeg and `abort` (main thread) stopping it.
        self._lock = threading.Lock()
        self._aborted = False

    def _command(self, partial: Path, first: int) -> list[str]:
        clip = self.clip
        source = [
            "-f",
            "rawvideo",
            "-pix_fmt",
            self.pixel_format,
            "-s",
            f"{clip.width}x{clip.height}",
            "-framerate",
            f"{clip.fps.numerator}/{clip.fps.denominator}",
            # Input options: the frames carry them, and the encoder takes its stream's colour
            # description (H.264/H.265 VUI, PNG cICP) from the frames, not from output options.
            *self.colour.ffmpeg_options(),
            "-i",
            "pipe:0",
        ]
        if self.job.folder_out:
            # image2 reads `%` in the whole name as a pattern: the folder's own are escaped.
            pattern = ffmpeg_path(partial).replace("%", "%%") + os.sep + FRAME_PATTERN
            target = ["-c:v", "png", "-start_number", str(first), "-f", "image2", pattern]
        else:
            aspect = ["-vf", f"setsar={self.sar.numerator}/{self.sar.denominator}"] if self.sar else []
            target = [
                *aspect,
                *encoder_options(self.job.codec, self.job.crf),
                *self.colour.hdr_options(self.job.codec),
                *BITEXACT,
                "-f",
                "nut",
                ffmpeg_path(partial),
            ]
        return ffmpeg_command(*source, *target)

    def write(self, index: int, frame_done: Callable[[vs.VideoFrame], None], cancel: threading.Event) -> bool:
        """Encodes segment `index`, calling `frame_done` with each frame handed to ffmpeg. True once
        the segment has its final name; False when `cancel` was set between two frames or `abort`
        ran first: nothing of the segment is kept then."""
        first = index * self.segment_frames
        last = min(first + self.segment_frames, self.clip.num_frames)
        with self._lock:
            if self._aborted or cancel.is_set():
                return False
            self.partial = self._new_partial(index)
            self.process = subprocess.Popen(
                self._command(self.partial, first), stdin=subprocess.PIPE, stderr=subprocess.PIPE
            )
        try:
            for frame in self.clip[first:last].frames():
                if cancel.is_set():
                    self.abort()
                    return False
                for plane in self.plane_order:
                    self.process.stdin.write(np.ascontiguousarray(np.asarray(frame[plane])).data)
                frame_done(frame)
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        stderr = self.process.stderr.read()
        self.process.wait()
        with self._lock:
            if self._aborted:  # killed, or finished just before `abort` removed it
                return False
            if self.process.returncode != 0:
                last_line = (stderr.decode(errors="replace").strip().splitlines() or ["(no message)"])[-1]
                raise UpscaleError(f"ffmpeg failed to encode segment {index}: {last_line}")
            self.written[index] = self.verify_and_rename(self.partial, index)
            self.partial = None
        return True

    def _new_partial(self, index: int) -> Path:
        """A new file (a folder for PNG frames) for segment `index` in the work folder, made
        exclusively under a fresh name: ffmpeg then writes into what is surely ours."""
        prefix = f"partial_{index:05d}{self.partial_tag}."
        if self.job.folder_out:
            return new_folder(self.job.work, prefix)
        descriptor, path = new_file(self.job.work, prefix, ".nut")
        os.close(descriptor)
        return path

    def abort(self) -> None:
        """Stops the running ffmpeg, starts no other, and removes the unfinished segment."""
        with self._lock:
            self._aborted = True
            if self.process is not None and self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if self.partial is not None:
                remove(self.partial)


def frames_in_file(path: Path) -> int:
    """The frames in an encoded segment: PNG files in a folder, or video packets in a file."""
    if path.is_dir():
        return sum(1 for entry in path.iterdir() if FRAME_NAME.fullmatch(entry.name))
    return video_packets(path)


def join(job: JobSpec, writer: Segments, total_frames: int, fps: Fraction) -> None:
    """The finished segments (checked by the caller) -> the output: concat + the input's audio
    and subtitles (video outputs), or the frames moved into the output folder. The joined
    frames are counted before the output is written. Without `job.overwrite`, an output that
    appeared while the job ran is kept: UpscaleError, and the work folder stays for a resume."""
    if job.folder_out:
        frames = [frame for index in range(writer.count) for frame in sorted(writer.final_path(index).iterdir())]
        _check_count(job, sum(1 for frame in frames if FRAME_NAME.fullmatch(frame.name)), total_frames)
        if not job.overwrite and os.path.lexists(job.output):  # before a frame leaves its segment
            raise _appeared(job)
        joined = job.work / "joined"
        own_folder(joined)  # an interrupted join left frames here that no segment holds any more
        for frame in frames:
            os.replace(frame, joined / frame.name)
        if not job.overwrite:
            # rename(2) replaces at most an empty folder, never one that holds anything or a file
            try:
                if os.path.lexists(job.output):
                    raise FileExistsError
                os.rename(joined, job.output)
            except OSError:
                raise _appeared(job) from None
            return
        if not job.output.exists():
            os.replace(joined, job.output)
            return
        # A folder that `_check_output` let through: this job's frames replace those of the same
        # name, frame files beyond its last (of a longer earlier job) go, nothing else is touched.
        for stale in job.output.iterdir():
            if FRAME_NAME.fullmatch(stale.name) and int(stale.name[:8]) >= total_frames and not stale.is_dir():
                stale.unlink()
        for frame in joined.iterdir():
            os.replace(frame, job.output / frame.name)
        return
    # Explicit durations: the concat demuxer otherwise guesses them from each segment's
    # timestamps, which B-frame delays make one frame too long.
    segments = concat_input(
        job.work / "segments.txt",
        [writer.final_path(index).name for index in range(writer.count)],
        [float(writer.frames_in(index) / fps) for index in range(writer.count)],
    )
    joined = job.work / ("joined" + job.output.suffix)
    remove(joined)  # ffmpeg writes it anew; nothing of an earlier try is kept under the name
    extras = []
    if not job.input.is_dir():  # audio and subtitles of a video input, cut like the frames
        start = float(Fraction(job.start) / fps)
        extras = ["-ss", f"{start:.6f}", "-t", f"{float(total_frames / fps):.6f}", "-i", ffmpeg_path(job.input)]
    subtitle_codec = "mov_text" if job.output.suffix.lower() in MP4_SUFFIXES else "copy"

    def mux(audio_codec: str) -> list[str]:
        maps = ["-map", "0:v"] + (["-map", "1:a?", "-map", "1:s?"] if extras else [])
        return ffmpeg_command(
            *segments,
            *extras,
            *maps,
            "-c:v",
            "copy",
            "-c:a",
            audio_codec,
            "-c:s",
            subtitle_codec,
            # The container's colour tags: the only ones a stream without them (FFV1) gets.
            *writer.colour.ffmpeg_options(),
            *BITEXACT,
            ffmpeg_path(joined),
        )

    try:
        run_ffmpeg(mux("copy"), f"write {job.output}")
    except UpscaleError:
        # Some audio codecs do not fit some containers (e.g. PCM in MP4): re-encode to AAC then.
        run_ffmpeg(mux("aac"), f"write {job.output}")
        if not job.quiet:
            print(
                f"upscale: the input's audio cannot be copied into {job.output.suffix}; re-encoded it as AAC",
                file=sys.stderr,
            )
    _check_count(job, frames_in_file(joined), total_frames)
    fsync_path(joined)
    if job.overwrite:
        os.replace(joined, job.output)
        return
    try:
        place_new(joined, job.output)
    except FileExistsError:
        raise _appeared(job) from None


def _check_count(job: JobSpec, found: int, expected: int) -> None:
    if found != expected:
        raise UpscaleError(
            f"the joined output has {found} frames, not the job's {expected}; {job.output} is not "
            f"written, the segments are kept in {job.work}: run the same command with --resume"
        )


def _appeared(job: JobSpec) -> UpscaleError:
    return UpscaleError(
        f"{job.output} appeared while the job ran and is kept; move it away and run the same command "
        f"with --resume (the finished job waits in {job.work}), or add --overwrite to replace it"
    )
