"""The job's input as a clip: a video (bestsource), or a folder of PNG/JPEG frames.

A folder of frames is read by ffmpeg (concat demuxer, names sorted) into a lossless FFV1 file in
the work folder that bestsource then reads: one decoder for videos and frames alike (`core.imwri`
does not come with the wheels this package uses).
"""

from __future__ import annotations

import math
import os
import shlex
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import vapoursynth as vs

from .. import memory, options
from .errors import UpscaleError
from .ffmpeg import ffmpeg_command, ffmpeg_path, run_ffmpeg, unreadable

if TYPE_CHECKING:
    from .job import JobSpec

# bestsource keeps decoded frames up to `cachesize` MB (100 by default) whatever reads them: on small
# frames that is thousands of frames, memory that grows with the clip for most of a long job. The
# job keeps what the filter reads again instead: the context frames behind each window, served
# from here when VapourSynth's own caches let them go. Two windows with their context, in the
# source's own format, twice over for the decoder's padded buffers; never more than the default.
SOURCE_CACHE_WINDOWS = 2
DECODER_PADDING = 2
BESTSOURCE_DEFAULT_CACHE_MB = 100


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# JPEG start-of-frame markers (they hold the image size): C0-CF but DHT (C4), JPG (C8), DAC (CC).
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def is_folder_output(path: Path) -> bool:
    return path.is_dir() or path.suffix == "" or str(path).endswith(os.sep)


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


def _check_frame_sizes(folder: Path, frames: list[Path]) -> None:
    """Refuses frames of different sizes: ffmpeg would silently scale them all to the first's."""
    first = image_size(frames[0])
    for frame in frames[1:]:
        size = image_size(frame)
        if first is not None and size is not None and size != first:
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
        _check_frame_sizes(path, frames)
        scratch.mkdir(parents=True, exist_ok=True)
        listing = scratch / "frames.txt"
        listing.write_text("".join(f"file {shlex.quote(str(frame.resolve()))}\n" for frame in frames))
        path = scratch / "frames.mkv"
        fps = job.fps or Fraction(25)
        run_ffmpeg(
            ffmpeg_command(
                "-f",
                "concat",
                "-safe",
                "0",
                "-r",
                str(fps),
                "-i",
                ffmpeg_path(listing),
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
    return path


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


def open_video(job: JobSpec, path: Path) -> vs.VideoNode:
    """Frames [start, end) of the job of the video file `path` (`source_file`), through bestsource."""
    core = vs.core
    if not hasattr(core, "bs"):
        raise UpscaleError("reading videos needs bestsource; pip install vapoursynth-bestsource")
    try:
        clip = core.bs.VideoSource(str(path))
        # Its format is known only once open: open it again with the cache the windows need.
        if clip.format is not None and clip.width > 0:
            clip = core.bs.VideoSource(str(path), cachesize=source_cache_mb(clip, job.upscale_options))
    except vs.Error:
        raise UpscaleError(unreadable(job.input)) from None
    if clip.num_frames == 0:
        raise UpscaleError(f"{job.input} has no video frames; pass a video with at least one frame")
    end = clip.num_frames if job.end is None else job.end
    if not 0 <= job.start < end <= clip.num_frames:
        raise UpscaleError(
            f"--start {job.start} / --end {job.end} do not fit the {clip.num_frames} frames "
            f"of {job.input}; use 0 <= start < end <= {clip.num_frames}"
        )
    return clip[job.start : end]
