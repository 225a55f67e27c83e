"""The job's input as a clip: a video (bestsource), or a folder of PNG/JPEG frames.

A folder of frames is read by ffmpeg (concat demuxer, names sorted) into a lossless FFV1 file in
the work folder that bestsource then reads: one decoder for videos and frames alike (`core.imwri`
does not come with the wheels this package uses). The concat list names links of our own
(`00000000.png`, ...) to the frames, so no name of the user's (quotes, newlines) is ever parsed
by it; every frame must decode, or the folder is refused naming the one that does not.
"""

from __future__ import annotations

import math
import os
import re
import stat
import subprocess
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import vapoursynth as vs

from .. import options
from ..engine import memory
from ..safe_files import own_folder, remove
from .errors import UpscaleError
from .ffmpeg import concat_input, describe, ffmpeg_command, ffmpeg_path, run_ffmpeg, unreadable, video_packets
from .spec import FOLDER_FPS, JobSpec

# bestsource keeps decoded frames up to `cachesize` MB (100 by default) whatever reads them: on small
# frames that is thousands of frames, memory that grows with the clip for most of a long job. The
# job keeps what the filter reads again instead: the context frames behind each window, served
# from here when VapourSynth's own caches let them go. Two windows with their context, in the
# source's own format, twice over for the decoder's padded buffers; never more than the default.
SOURCE_CACHE_WINDOWS = 2
DECODER_PADDING = 2
BESTSOURCE_DEFAULT_CACHE_MB = 100


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Pixel formats with an alpha channel, as ffmpeg names them in its description of a stream.
ALPHA_FORMAT = re.compile(r"Video: [^,]+, (yuva|rgba|bgra|argb|abgr|gbrap|ya8|ya16|rgba64|bgra64)\w*\b")
# Frame durations that differ by at most this (ms, as ffmpeg's timestamp list rounds them) are one rate.
DURATION_TOLERANCE_MS = 1.0
# JPEG start-of-frame markers (they hold the image size): C0-CF but DHT (C4), JPG (C8), DAC (CC).
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def image_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG's or JPEG's header, without decoding; None for other files."""
    with path.open("rb") as file:
        head = file.read(24)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        if head[:2] != b"\xff\xd8":
            return None
        position = 2  # JPEG: walk the marker segments up to the first start-of-frame
        while True:
            file.seek(position)
            segment = file.read(9)  # marker, length, precision, height, width
            if len(segment) < 4 or segment[0] != 0xFF:
                return None
            marker = segment[1]
            if marker in JPEG_SOF_MARKERS:
                if len(segment) < 9:
                    return None
                return int.from_bytes(segment[7:9], "big"), int.from_bytes(segment[5:7], "big")
            if marker == 0xFF:  # a fill byte
                position += 1
            elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
                position += 2
            elif marker in (0xD9, 0xDA):  # end of image, or a scan before any frame header
                return None
            else:
                position += 2 + int.from_bytes(segment[2:4], "big")


def _check_frames(folder: Path, frames: list[Path]) -> None:
    """Refuses what is not a PNG or JPEG picture (by its header; a FIFO or other special file is
    not even opened), and frames of different sizes: ffmpeg would silently drop the former and
    scale the latter to the first's size."""
    for frame in frames:
        if not stat.S_ISREG(frame.stat().st_mode):
            raise UpscaleError(f"{frame} is not a regular file; remove it from {folder}")
    sizes = [image_size(frame) for frame in frames]
    for frame, size in zip(frames, sizes, strict=True):
        if size is None:
            raise UpscaleError(
                f"{frame} is not a PNG or JPEG picture (damaged, or another kind of file); "
                f"repair or remove it from {folder}"
            )
    first = sizes[0]
    for frame, size in zip(frames[1:], sizes[1:], strict=True):
        if size != first:
            raise UpscaleError(
                f"{folder} holds frames of different sizes: {frame.name} is {size[0]}x{size[1]}, "
                f"{frames[0].name} is {first[0]}x{first[1]}; bring all frames to one size first"
            )


def open_source(job: JobSpec, scratch: Path) -> vs.VideoNode:
    """The input as a clip: a video through bestsource; a folder of frames is first copied
    losslessly (ffmpeg's image2 demuxer, FFV1 RGB) into `scratch`, which bestsource then reads."""
    return open_video(job, source_file(job, scratch))


def source_file(job: JobSpec, scratch: Path) -> Path:
    """The video file the job decodes: the input, or for a folder of frames their lossless copy
    in `scratch` (made here)."""
    path = job.input
    if path.is_dir():
        frames = image_files(path)
        suffixes = {frame.suffix.lower().replace("jpeg", "jpg") for frame in frames}
        if not frames:
            raise UpscaleError(f"{path} holds no PNG or JPEG frames; pass a video or a folder of frames")
        if len(suffixes) > 1:
            raise UpscaleError(f"{path} mixes PNG and JPEG frames; keep one kind of image in the folder")
        _check_frames(path, frames)
        own_folder(scratch)
        links = scratch / "frames"
        remove(links)
        own_folder(links)
        names = [f"{number:08d}{frame.suffix.lower()}" for number, frame in enumerate(frames)]
        for name, frame in zip(names, frames, strict=True):
            os.symlink(frame.resolve(), links / name)
        path = scratch / "frames.mkv"
        remove(path)
        fps = job.fps or FOLDER_FPS
        run_ffmpeg(
            ffmpeg_command(
                "-r",
                str(fps),
                *concat_input(links / "frames.txt", names),
                "-c:v",
                "ffv1",
                "-pix_fmt",
                "gbrp",
                "-r",
                str(fps),
                ffmpeg_path(path),
            ),
            f"read the frames in {job.input}",
        )
        _check_all_decoded(job.input, frames, path)
    return path


def _check_all_decoded(folder: Path, frames: list[Path], video: Path) -> None:
    """Refuses a folder of which ffmpeg read fewer frames than it holds (it skips one it cannot
    decode, e.g. a truncated PNG), naming the first such frame."""
    if video_packets(video) == len(frames):
        return
    for frame in frames:
        decoded = subprocess.run(
            ffmpeg_command("-i", ffmpeg_path(frame), "-f", "null", "-"), capture_output=True, check=False
        )
        if decoded.returncode != 0 or decoded.stderr.strip():
            raise UpscaleError(f"{frame} cannot be decoded (damaged?); repair or remove it from {folder}")
    raise UpscaleError(f"ffmpeg read fewer frames from {folder} than it holds; check its pictures")


def window_frames(upscale_options: dict) -> tuple[int, int]:
    """(frames per window, input frames the filter reads for one: the window and its context on
    both sides); for an automatic window, the longest the engine picks."""
    opts = options.UpscaleOptions.of(**upscale_options)
    window = opts.max_seq_len or memory.MAX_AUTO_WINDOW
    return window, window + 2 * opts.overlap


def frame_bytes(clip: vs.VideoNode) -> int:
    """The samples of one frame of `clip` (constant format and size), in bytes."""
    fmt = clip.format
    return sum(
        (clip.width >> (fmt.subsampling_w if plane else 0))
        * (clip.height >> (fmt.subsampling_h if plane else 0))
        * fmt.bytes_per_sample
        for plane in range(fmt.num_planes)
    )


def source_cache_mb(clip: vs.VideoNode, upscale_options: dict) -> int:
    """bestsource's `cachesize` for a job of `clip` (see SOURCE_CACHE_WINDOWS), in MB, 1 to 100."""
    read = window_frames(upscale_options)[1]
    needed = math.ceil(SOURCE_CACHE_WINDOWS * read * frame_bytes(clip) * DECODER_PADDING / 2**20)
    return min(max(1, needed), BESTSOURCE_DEFAULT_CACHE_MB)


def open_video_file(
    path: Path, cache_mb: Callable[[vs.VideoNode], int] | None = None, shown: Path | None = None
) -> vs.VideoNode:
    """The video file `path` through bestsource, as the job reads its input (and `compare` its
    two videos). `cache_mb(clip)`: bestsource's `cachesize` for the clip (default: its own).
    UpscaleError when bestsource is missing or cannot read the file: why, from what ffmpeg sees
    in it, naming `shown` (default `path`)."""
    core = vs.core
    if not hasattr(core, "bs"):
        raise UpscaleError("reading videos needs bestsource; pip install vapoursynth-bestsource")
    try:
        clip = core.bs.VideoSource(str(path))
        # Its format is known only once open: open it again with the cache its reader needs.
        if cache_mb is not None and clip.format is not None and clip.width > 0:
            clip = core.bs.VideoSource(str(path), cachesize=cache_mb(clip))
    except vs.Error:
        raise UpscaleError(unreadable(shown or path)) from None
    return clip


def open_video(job: JobSpec, path: Path) -> vs.VideoNode:
    """Frames [start, end) of the job of the video file `path` (`source_file`), through bestsource."""
    clip = open_video_file(path, lambda clip: source_cache_mb(clip, job.upscale_options), shown=job.input)
    if clip.num_frames == 0:
        raise UpscaleError(f"{job.input} has no video frames; pass a video with at least one frame")
    end = clip.num_frames if job.end is None else job.end
    if not 0 <= job.start < end <= clip.num_frames:
        raise UpscaleError(
            f"--start {job.start} / --end {job.end} do not fit the {clip.num_frames} frames "
            f"of {job.input}; use 0 <= start < end <= {clip.num_frames}"
        )
    return clip[job.start : end]


def input_notes(job: JobSpec, fps: Fraction) -> list[str]:
    """What the job changes about its input without being asked (the command says each once):
    an alpha channel is dropped; a variable frame rate becomes the constant `fps`."""
    first = image_files(job.input)[0] if job.input.is_dir() else job.input
    notes = []
    if ALPHA_FORMAT.search(describe(first)):
        notes.append(f"{job.input} has an alpha channel (transparency); the output is opaque, without it")
    if not job.input.is_dir() and _variable_rate(job.input):
        rate = f"{fps.numerator}/{fps.denominator}" if fps.denominator != 1 else str(fps.numerator)
        notes.append(
            f"{job.input} has a variable frame rate; the output keeps every frame at a constant {rate} fps, "
            "so its timing differs"
        )
    return notes


def _variable_rate(video: Path) -> bool:
    """Whether the first video stream's frames last different times (from the packets' timestamps,
    without decoding)."""
    listing = subprocess.run(
        ffmpeg_command("-i", ffmpeg_path(video), "-map", "0:v:0", "-c", "copy", "-f", "mkvtimestamp_v2", "-"),
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    stamps = sorted(float(line) for line in listing.splitlines() if line and not line.startswith("#"))
    durations = [after - before for before, after in zip(stamps, stamps[1:], strict=False)]
    return bool(durations) and max(durations) - min(durations) > DURATION_TOLERANCE_MS
