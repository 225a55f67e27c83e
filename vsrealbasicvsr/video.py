"""From a video (or a folder of frames) to an upscaled video in one call: `vsrealbasicvsr upscale`.

The pipeline is the one a `.vpy` script would build (`upscaled_clip`, shared with
examples/upscale_yuv.vpy, so the script and the command give the same frames):

    source (bestsource) -> scene cuts (scxvid) -> RGBS -> core.rbvsr.Upscale -> YUV -> ffmpeg

Frames are piped raw into ffmpeg as they come, in segments of whole windows written to a work
folder beside the output (`<output>.rbvsr-work/`). A segment file only gets its final name when
ffmpeg has finished it, so an interrupted job resumes (`--resume`) from the first missing
segment; at the end the segments are joined (ffmpeg concat, stream copy) with the input's audio
and subtitles, and the result is renamed to the output's name. The job holds a lock in its work
folder for its whole life: one job per output.

A folder of PNG/JPEG frames is read by ffmpeg (concat demuxer, names sorted) into a lossless FFV1
file in the work folder that bestsource then reads: one decoder for videos and frames alike
(`core.imwri` does not come with the wheels this package uses).
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import vapoursynth as vs

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# The names of the frames a folder output gets (ffmpeg's image2 pattern), and what they match.
FRAME_PATTERN = "%08d.png"
FRAME_NAME = re.compile(r"\d{8}\.png")
# JPEG start-of-frame markers (they hold the image size): C0-CF but DHT (C4), JPG (C8), DAC (CC).
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# The job's advisory lock, in its work folder (see `lock_work`).
LOCK_NAME = "lock"
# Output containers that only take mov_text subtitles.
MP4_SUFFIXES = (".mp4", ".m4v", ".mov")
# No random ids or dates in the files, so a resumed job writes the same bytes as one that was not.
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]
CRF_CODECS = ("libx264", "libx264rgb", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1")
DEFAULT_CODEC, DEFAULT_CRF = "libx264", 18
# Windows per segment: what an interruption can lose at most, and one ffmpeg start per segment.
SEGMENT_WINDOWS = 2
SCENE_PROPS = ["_SceneChangePrev", "_SceneChangeNext"]
FALLBACK_MODEL = "basicvsr-reds4"
# Test hook: after this many segments are finished, the job interrupts itself with SIGINT.
STOP_AFTER_SEGMENTS_ENV = "VSREALBASICVSR_STOP_AFTER_SEGMENTS"
# Seconds between progress lines when stderr is not a terminal; the environment variable sets
# another (tests use a short one). A terminal's bar is redrawn every second, or at that
# interval when it is shorter.
PROGRESS_INTERVAL_S = 30.0
PROGRESS_INTERVAL_ENV = "VSREALBASICVSR_PROGRESS_INTERVAL"
BAR_REDRAW_S = 1.0
# A rate is shown once the work timed covers a window, or after this long for windows longer
# than that (steps within a window are counted alike but do not all take the same time).
RATE_AFTER_S = 120.0

# VapourSynth's colour enums (ITU-T H.273 codes) -> ffmpeg's names.
MATRICES = {0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco",
            9: "bt2020nc", 10: "bt2020c", 12: "chroma-derived-nc", 13: "chroma-derived-c", 14: "ictcp"}
TRANSFERS = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
             9: "log100", 10: "log316", 11: "iec61966-2-4", 13: "iec61966-2-1", 14: "bt2020-10",
             15: "bt2020-12", 16: "smpte2084", 18: "arib-std-b67"}
PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
             9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "jedec-p22"}
# Primaries and transfer that go with a matrix, for sources that tag only the matrix.
MATRIX_DEFAULTS = {1: (1, 1), 9: (9, 14), 10: (9, 14), 7: (7, 7)}


class UpscaleError(Exception):
    """A problem with the job that the user can fix; the message says how."""


# -- colour and the clip graph (shared with examples/upscale_yuv.vpy) ---------------------------

@dataclass(frozen=True)
class Colour:
    """The colour description of a YUV clip: H.273 codes and the range."""

    matrix: int
    transfer: int
    primaries: int
    range: int

    @classmethod
    def of(cls, clip: vs.VideoNode) -> "Colour":
        """From frame 0's properties. An unspecified matrix falls back to BT.709 for HD (width
        >= 1280 or height >= 720) and BT.601 (SMPTE 170M) for SD; unspecified primaries and
        transfer to those that go with the matrix; an unspecified range to limited."""
        props = clip.get_frame(0).props
        matrix = props.get("_Matrix", 2)
        if matrix not in MATRICES or matrix == 0:
            matrix = 1 if clip.width >= 1280 or clip.height >= 720 else 6
        primaries, transfer = MATRIX_DEFAULTS.get(matrix, (6, 6))
        if props.get("_Primaries") in PRIMARIES:
            primaries = props["_Primaries"]
        if props.get("_Transfer") in TRANSFERS:
            transfer = props["_Transfer"]
        return cls(matrix, transfer, primaries, int(props.get("_Range", vs.RANGE_LIMITED)))

    def ffmpeg_options(self) -> list[str]:
        return ["-colorspace", MATRICES[self.matrix], "-color_primaries", PRIMARIES[self.primaries],
                "-color_trc", TRANSFERS[self.transfer],
                "-color_range", "pc" if self.range == vs.RANGE_FULL else "tv"]


# The output format of RGB sources (image folders, RGB videos) when they are encoded as video.
RGB_SOURCE_OUTPUT = (vs.YUV420P8, Colour(matrix=1, transfer=1, primaries=1, range=vs.RANGE_LIMITED))


def detect_scenes(clip: vs.VideoNode) -> vs.VideoNode:
    """`clip` with `_SceneChangePrev`/`_SceneChangeNext` from scxvid (vapoursynth-scxvid)."""
    core = vs.core
    if not hasattr(core, "scxvid"):
        raise UpscaleError("scene detection needs the scxvid plugin; pip install vapoursynth-scxvid, "
                           "or turn scene detection off (--no-scene-detect, scene_detect=False)")
    analysed = clip
    if clip.format.id != vs.YUV420P8:  # scxvid reads 8-bit 4:2:0 only
        options = {"matrix_s": "709"} if clip.format.color_family == vs.RGB else {}
        analysed = core.resize.Bilinear(clip, format=vs.YUV420P8, **options)
    return core.std.CopyFrameProps(clip, core.scxvid.Scxvid(analysed), props=SCENE_PROPS)


def upscaled_clip(source: vs.VideoNode, rgb_out: bool = False, scene_detect: bool = True,
                  **upscale_options) -> tuple[vs.VideoNode, Colour | None]:
    """The upscaled clip of `source` and its colour description, as the command encodes it.

    YUV sources are converted to RGBS with their own matrix and range (`Colour.of`), upscaled
    with `vsrealbasicvsr.upscale(**upscale_options)`, and converted back to the source's format
    with the same matrix and range. RGB sources come back as YUV420P8 BT.709 (limited). With
    `rgb_out`, the result is RGB24 (for PNG frames) and the colour None.
    """
    from . import upscale

    core = vs.core
    if source.format is None or source.width == 0:
        raise UpscaleError("the input changes format or size between frames; convert it to one format first")
    if source.format.color_family not in (vs.YUV, vs.RGB):
        raise UpscaleError(f"unsupported input format {source.format.name}; use a YUV or RGB video")
    if scene_detect:
        source = detect_scenes(source)
    if source.format.color_family == vs.YUV:
        colour = Colour.of(source)
        rgb = core.resize.Bicubic(source, format=vs.RGBS, matrix_in=colour.matrix, range_in=colour.range)
        out_format = source.format.id
    else:
        out_format, colour = RGB_SOURCE_OUTPUT
        rgb = core.resize.Bicubic(source, format=vs.RGBS)
    upscaled = upscale(rgb, **upscale_options)
    if rgb_out:
        return core.resize.Bicubic(upscaled, format=vs.RGB24), None
    encoded = core.resize.Bicubic(upscaled, format=out_format, matrix=colour.matrix, range=colour.range)
    encoded = core.std.SetFrameProps(encoded, _Matrix=colour.matrix, _Transfer=colour.transfer,
                                     _Primaries=colour.primaries, _Range=colour.range)
    return encoded, colour


def raw_pixel_format(clip: vs.VideoNode) -> tuple[str, list[int]]:
    """ffmpeg's rawvideo pixel format for `clip` and the order its planes are written in."""
    fmt = clip.format
    if fmt.color_family == vs.RGB and fmt.id == vs.RGB24:
        return "gbrp", [1, 2, 0]
    subsampling = {(1, 1): "420", (1, 0): "422", (0, 0): "444"}.get((fmt.subsampling_w, fmt.subsampling_h))
    if fmt.color_family != vs.YUV or fmt.sample_type != vs.INTEGER or subsampling is None:
        raise UpscaleError(f"cannot encode the format {fmt.name}; use an 8- to 16-bit YUV 4:2:0, 4:2:2 or 4:4:4 input")
    bits = "" if fmt.bits_per_sample == 8 else f"{fmt.bits_per_sample}le"
    return f"yuv{subsampling}p{bits}", [0, 1, 2]


# -- ffmpeg -------------------------------------------------------------------------------------

def ffmpeg_exe() -> str:
    """Debian's (or any) `ffmpeg` on PATH, else the binary of the imageio-ffmpeg wheel."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UpscaleError("no ffmpeg found; pip install imageio-ffmpeg, or put ffmpeg on PATH") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmpeg(*args: str) -> list[str]:
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]


def _ffmpeg_path(path: Path) -> str:
    """`path` as an ffmpeg argument: absolute, so that a name starting with `-` is never read as an
    option, nor one with a colon as a protocol."""
    return os.path.abspath(path)


def _run_ffmpeg(args: list[str], what: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise UpscaleError(f"ffmpeg failed to {what}: {last}")


def video_encoders() -> set[str]:
    listing = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return {line.split()[1] for line in listing.splitlines() if line.startswith(" V") and len(line.split()) > 1}


def encoder_options(codec: str, crf: int | None) -> list[str]:
    options = ["-c:v", codec]
    if codec in CRF_CODECS:
        options += ["-crf", str(DEFAULT_CRF if crf is None else crf)]
        if codec == "libvpx-vp9":
            options += ["-b:v", "0"]  # constant quality, no bitrate cap
    return options


# -- the job ------------------------------------------------------------------------------------

@dataclass
class Job:
    """What `vsrealbasicvsr upscale` was asked to do, checked."""

    input: Path
    output: Path
    folder_out: bool
    work: Path
    codec: str
    crf: int | None
    start: int
    end: int | None
    fps: Fraction | None  # for image folders
    scene_detect: bool
    upscale_options: dict
    quiet: bool
    overwrite: bool  # start an unfinished job of OUTPUT over (OUTPUT itself is checked in `_job`)
    resume: bool

    def fingerprint(self, frames: int, segment_frames: int) -> dict:
        stat = self.input.stat()
        return {"input": str(self.input.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "frames": frames, "segment_frames": segment_frames, "codec": self.codec, "crf": self.crf,
                "start": self.start, "end": self.end,
                "fps": None if self.fps is None else f"{self.fps.numerator}/{self.fps.denominator}",
                "scene_detect": self.scene_detect,
                "folder_out": self.folder_out,
                "options": {key: str(value) for key, value in sorted(self.upscale_options.items())}}


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
            raise UpscaleError(f"{folder} holds frames of different sizes: {frame.name} is {size[0]}x{size[1]}, "
                               f"{frames[0].name} is {first[0]}x{first[1]}; bring all frames to one size first")


def open_source(job: Job, scratch: Path) -> vs.VideoNode:
    """The input as a clip: a video through bestsource; a folder of frames is first copied
    losslessly (ffmpeg's image2 demuxer, FFV1 RGB) into `scratch`, which bestsource then reads."""
    core = vs.core
    if not hasattr(core, "bs"):
        raise UpscaleError("reading videos needs bestsource; pip install vapoursynth-bestsource")
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
        _run_ffmpeg(_ffmpeg("-f", "concat", "-safe", "0", "-r", str(fps), "-i", _ffmpeg_path(listing), "-c:v", "ffv1",
                            "-pix_fmt", "gbrp", "-r", str(fps), _ffmpeg_path(path)), f"read the frames in {job.input}")
    try:
        clip = core.bs.VideoSource(str(path))
    except vs.Error:
        raise UpscaleError(_unreadable(job.input)) from None
    if clip.num_frames == 0:
        raise UpscaleError(f"{job.input} has no video frames; pass a video with at least one frame")
    end = clip.num_frames if job.end is None else job.end
    if not 0 <= job.start < end <= clip.num_frames:
        raise UpscaleError(f"--start {job.start} / --end {job.end} do not fit the {clip.num_frames} frames "
                           f"of {job.input}; use 0 <= start < end <= {clip.num_frames}")
    return clip[job.start:end]


def _filter_message(error: Exception) -> str:
    """The first line of a filter or engine error, without its `Upscale: ` prefix."""
    return (str(error).splitlines() or [type(error).__name__])[0].removeprefix("Upscale: ")


def _unreadable(path: Path) -> str:
    """Why bestsource could not open `path`, from what ffmpeg sees in it."""
    probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", _ffmpeg_path(path)], capture_output=True,
                           text=True).stderr
    if "Video:" in probe:
        return f"{path} has no video frames that can be decoded; pass a video with at least one frame"
    if "Stream #" in probe:
        return f"{path} has no video stream; pass a video file or a folder of PNG/JPEG frames"
    return f"{path} is not a video; pass a video file or a folder of PNG/JPEG frames"


def check_weights(model: str, checkpoint, command: list[str], quiet: bool, fetch: bool = True) -> None:
    """Stops before any work when the model's weights are missing and cannot be fetched
    (`fetch` False: when the model or checkpoint is unknown, and nothing is downloaded)."""
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise UpscaleError(f"checkpoint {checkpoint} does not exist; pass the path of a .pth file")
        return
    from . import registry

    if model not in registry.MODELS:
        raise UpscaleError(f"unknown model {model!r}; use one of {', '.join(registry.MODELS)}")
    if registry.resolve(model) is not None or not fetch:
        return
    from . import download

    try:
        download.download(model, quiet=quiet)
    except download.WeightsFolderError as error:  # no other model or source would help
        raise UpscaleError(str(error)) from None
    except (download.DownloadError, OSError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0].split("; ")[0]
        fallback = _replace_model(command, FALLBACK_MODEL)
        raise UpscaleError(f"the weights of {model} are not installed and could not be fetched ({reason}); "
                           f"run `vsrealbasicvsr download {model}` where its site is reachable, or use "
                           f"`{shlex.join(fallback)}`") from None


def _replace_model(command: list[str], model: str) -> list[str]:
    words, skip = [], False
    for word in command:
        if skip:
            skip = False
        elif word == "--model":
            skip = True
        elif not word.startswith("--model="):
            words.append(word)
    return [*words, "--model", model]


class Progress:
    """The job's progress on stderr: a tqdm bar on a terminal, plain lines otherwise (every
    PROGRESS_INTERVAL_S seconds and at each segment's end), or nothing (quiet).

    Counted in frames of work: the frames handed over, or ahead of them the engine's work within
    the windows being computed (`engine.progress()`, or `work`), since frames leave a window only
    at its end, minutes apart on a CPU. The rate and the ETA come from the work measured since
    the start, once it covers a window or RATE_AFTER_S have passed (`ETA --` before: the first
    frames' rate means nothing).
    """

    def __init__(self, total: int, done: int, quiet: bool, window: int = 1, work=None):
        from . import engine

        self.total, self.done, self.quiet = total, done, quiet
        self.first, self.shown = done, float(done)
        self.work = work or engine.progress
        self.work_start = self.work()
        self.measured_enough = min(window, total - done)  # frames of work before a rate is shown
        self.started = time.monotonic()
        self.interval = float(os.environ.get(PROGRESS_INTERVAL_ENV) or PROGRESS_INTERVAL_S)
        self.bar = None
        self._lock = threading.Lock()  # the ticker and the segment writer both show progress
        self._stop = threading.Event()
        if quiet:
            return
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="frame", dynamic_ncols=True,
                            bar_format="{percentage:3.0f}%|{bar}| {n:.1f}/{total} frames [{elapsed}{postfix}]")
        period = min(self.interval, BAR_REDRAW_S) if self.bar is not None else self.interval
        self._ticker = threading.Thread(target=self._tick, args=(period,), name="rbvsr-progress", daemon=True)
        self._ticker.start()

    def _tick(self, period: float) -> None:
        while not self._stop.wait(period):
            self._show()

    def frames(self) -> float:
        """Frames of work done: at least those handed over, never fewer than shown before."""
        work = self.first + self.work() - self.work_start
        self.shown = min(float(self.total), max(self.shown, float(self.done), work))
        return self.shown

    def rate(self, frames: float) -> str:
        """'<fps> fps, ETA <h:m:s>' from the work since the start, or 'ETA --' until it means something."""
        measured, elapsed = frames - self.first, time.monotonic() - self.started
        if measured <= 0 or (measured < self.measured_enough and elapsed < RATE_AFTER_S):
            return "ETA --"
        fps = measured / elapsed
        eta = time.strftime("%H:%M:%S", time.gmtime((self.total - frames) / fps))
        return f"{fps:.2f} fps, ETA {eta}"

    def _show(self) -> None:
        with self._lock:
            frames = self.frames()
            if self.bar is not None:
                self.bar.n = frames
                self.bar.set_postfix_str(self.rate(frames))  # and redraws
            elif not self.quiet:
                count = f"{frames:.1f}".removesuffix(".0")
                print(f"upscale: {count}/{self.total} frames ({100 * frames // self.total:.0f}%), "
                      f"{self.rate(frames)}", file=sys.stderr, flush=True)

    def update(self, frames: int = 1, segment_done: bool = False) -> None:
        """`frames` more were handed over; at a segment's end, a line (without a terminal)."""
        self.done += frames
        if segment_done and self.bar is None:
            self._show()

    def close(self) -> None:
        self._stop.set()
        if not self.quiet:
            self._ticker.join()
        if self.bar is not None:
            self._show()
            self.bar.close()


class SegmentWriter:
    """Encodes segments of the clip, each through its own ffmpeg, into the work folder."""

    def __init__(self, job: Job, clip: vs.VideoNode, colour: Colour | None, sar: Fraction | None,
                 segment_frames: int):
        self.job, self.clip, self.colour = job, clip, colour
        self.sar = sar  # the source's sample aspect ratio, None for square pixels
        self.segment_frames = segment_frames
        self.count = -(-clip.num_frames // segment_frames)
        self.pixel_format, self.plane_order = raw_pixel_format(clip)
        self.process: subprocess.Popen | None = None
        self.partial: Path | None = None
        self.error: BaseException | None = None
        # Between the worker starting an ffmpeg and `abort` (main thread) stopping it.
        self._lock = threading.Lock()
        self._aborted = False

    def final_path(self, index: int) -> Path:
        return self.job.work / (f"segment_{index:05d}" + ("" if self.job.folder_out else ".nut"))

    def frames_in(self, index: int) -> int:
        return min(self.segment_frames, self.clip.num_frames - index * self.segment_frames)

    def finished(self) -> list[int]:
        return [index for index in range(self.count) if self.final_path(index).exists()]

    def _command(self, partial: Path, first: int) -> list[str]:
        clip = self.clip
        source = ["-f", "rawvideo", "-pix_fmt", self.pixel_format, "-s", f"{clip.width}x{clip.height}",
                  "-framerate", f"{clip.fps.numerator}/{clip.fps.denominator}", "-i", "pipe:0"]
        if self.job.folder_out:
            partial.mkdir()
            # image2 reads `%` in the whole name as a pattern: the folder's own are escaped.
            pattern = _ffmpeg_path(partial).replace("%", "%%") + os.sep + FRAME_PATTERN
            target = ["-c:v", "png", "-start_number", str(first), "-f", "image2", pattern]
        else:
            aspect = ["-vf", f"setsar={self.sar.numerator}/{self.sar.denominator}"] if self.sar else []
            target = [*aspect, *encoder_options(self.job.codec, self.job.crf), *self.colour.ffmpeg_options(),
                      *BITEXACT, "-f", "nut", _ffmpeg_path(partial)]
        return _ffmpeg(*source, *target)

    def write(self, index: int, progress: Progress) -> None:
        first = index * self.segment_frames
        last = min(first + self.segment_frames, self.clip.num_frames)
        with self._lock:
            if self._aborted:
                return
            self.partial = self.job.work / f"partial_{index:05d}"
            _remove(self.partial)
            self.process = subprocess.Popen(self._command(self.partial, first), stdin=subprocess.PIPE,
                                            stderr=subprocess.PIPE)
        try:
            for frame in self.clip[first:last].frames():
                for plane in self.plane_order:
                    self.process.stdin.write(np.ascontiguousarray(np.asarray(frame[plane])).data)
                progress.update(1)
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        stderr = self.process.stderr.read()
        self.process.wait()
        if self.process.returncode != 0:
            last_line = (stderr.decode(errors="replace").strip().splitlines() or ["(no message)"])[-1]
            raise UpscaleError(f"ffmpeg failed to encode segment {index}: {last_line}")
        os.replace(self.partial, self.final_path(index))
        self.partial = None
        progress.update(0, segment_done=True)

    def abort(self) -> None:
        """Stops the running ffmpeg, starts no other, and removes the unfinished segment."""
        with self._lock:
            self._aborted = True
            if self.process is not None and self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if self.partial is not None:
                _remove(self.partial)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def join(job: Job, writer: SegmentWriter, total_frames: int, fps: Fraction) -> None:
    """The finished segments -> the output: concat + the input's audio and subtitles (video
    outputs), or the frames moved into the output folder."""
    if job.folder_out:
        joined = job.work / "joined"
        joined.mkdir(exist_ok=True)  # an interrupted join left frames here that no segment holds any more
        for index in range(writer.count):
            for frame in sorted(writer.final_path(index).iterdir()):
                os.replace(frame, joined / frame.name)
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
    listing = job.work / "segments.txt"
    # Explicit durations: the concat demuxer otherwise guesses them from each segment's
    # timestamps, which B-frame delays make one frame too long.
    listing.write_text("".join(f"file {shlex.quote(writer.final_path(index).name)}\n"
                               f"duration {float(writer.frames_in(index) / fps):.9f}\n"
                               for index in range(writer.count)))
    joined = job.work / ("joined" + job.output.suffix)
    extras = []
    if not job.input.is_dir():  # audio and subtitles of a video input, cut like the frames
        start = float(Fraction(job.start) / fps)
        extras = ["-ss", f"{start:.6f}", "-t", f"{float(total_frames / fps):.6f}", "-i", _ffmpeg_path(job.input)]
    subtitle_codec = "mov_text" if job.output.suffix.lower() in MP4_SUFFIXES else "copy"

    def mux(audio_codec: str) -> list[str]:
        maps = ["-map", "0:v"] + (["-map", "1:a?", "-map", "1:s?"] if extras else [])
        return _ffmpeg("-f", "concat", "-safe", "0", "-i", _ffmpeg_path(listing), *extras, *maps, "-c:v", "copy",
                       "-c:a", audio_codec, "-c:s", subtitle_codec, *writer.colour.ffmpeg_options(),
                       *BITEXACT, _ffmpeg_path(joined))

    try:
        _run_ffmpeg(mux("copy"), f"write {job.output}")
    except UpscaleError:
        # Some audio codecs do not fit some containers (e.g. PCM in MP4): re-encode to AAC then.
        _run_ffmpeg(mux("aac"), f"write {job.output}")
        if not job.quiet:
            print(f"upscale: the input's audio cannot be copied into {job.output.suffix}; re-encoded it as AAC",
                  file=sys.stderr)
    os.replace(joined, job.output)


def run_job(job: Job, command: list[str], dry_run: bool) -> int:
    """Checks the job, then plans (dry run) or runs it. Returns the exit code."""
    check_weights(job.upscale_options["model"], job.upscale_options.get("checkpoint"), command, job.quiet,
                  fetch=not dry_run)
    scratch = job.work / "source"
    if dry_run:
        return print_plan(job)
    new_work = not job.work.exists()
    lock = lock_work(job.work, job.output)
    try:
        if not new_work and not job.resume:
            if not job.overwrite:
                raise UpscaleError(f"an unfinished job of {job.output} is in {job.work}; add --resume to continue "
                                   "it, or --overwrite to start over")
            for entry in job.work.iterdir():
                if entry.name != LOCK_NAME:
                    _remove(entry)
        source = open_source(job, scratch)
        sar = sample_aspect_ratio(source)
        window = _window_of_run(job, source)
        try:
            clip, colour = upscaled_clip(source, rgb_out=job.folder_out, scene_detect=job.scene_detect,
                                         **(job.upscale_options | {"max_seq_len": window}))
        except vs.Error as error:
            raise UpscaleError(_filter_message(error)) from None
        segment_frames = segment_length(window)
        job_file = job.work / "job.json"
        recorded = _read_job_file(job_file)
        weights = weights_fingerprint(weights_file(job.upscale_options), (recorded or {}).get("weights"))
        fingerprint = {**job.fingerprint(clip.num_frames, segment_frames), "weights": weights}
        if recorded is not None:
            _check_same_job(recorded, fingerprint, job.work)
        partial_job_file = job.work / "job.json.partial"
        partial_job_file.write_text(json.dumps(fingerprint, indent=1))
        os.replace(partial_job_file, job_file)
    except (UpscaleError, KeyboardInterrupt):
        if new_work:  # nothing was done: leave nothing behind
            shutil.rmtree(job.work)
        os.close(lock)
        raise

    writer = SegmentWriter(job, clip, colour, sar, segment_frames)
    finished = set(writer.finished())
    progress = Progress(clip.num_frames, sum(writer.frames_in(index) for index in finished), job.quiet, window)
    stop_after = int(os.environ.get(STOP_AFTER_SEGMENTS_ENV, "0") or 0)

    def work() -> None:
        written = 0
        try:
            for index in range(writer.count):
                if index in finished:
                    continue
                writer.write(index, progress)
                written += 1
                if written == stop_after:
                    os.kill(os.getpid(), signal.SIGINT)
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            writer.error = error

    worker = threading.Thread(target=work, name="rbvsr-segments", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.2)  # short waits keep Ctrl-C responsive while frames are computed
    except KeyboardInterrupt:
        writer.abort()
        progress.close()
        done = len(writer.finished())
        print(f"upscale: interrupted; {done} of {writer.count} segments are kept in {job.work}; "
              f"continue with: {shlex.join(_with_flag(command, '--resume'))}", file=sys.stderr, flush=True)
        # The VapourSynth threads may be inside a window that takes minutes: do not wait for them.
        os._exit(128 + signal.SIGINT)
    progress.close()
    if writer.error is not None:
        writer.abort()
        if isinstance(writer.error, vs.Error):
            raise UpscaleError(f"{_filter_message(writer.error)}; finished segments are kept in {job.work}, "
                               "continue with --resume") from None
        raise writer.error
    join(job, writer, clip.num_frames, clip.fps)
    shutil.rmtree(job.work)  # the lock file with it, still locked: see `lock_work`
    os.close(lock)
    if not job.quiet:
        print(f"upscale: wrote {job.output} ({clip.width}x{clip.height}, {clip.num_frames} frames)",
              file=sys.stderr)
    return 0


def lock_work(work: Path, output: Path) -> int:
    """Creates the work folder if needed and takes the job's lock in it; returns its descriptor.

    An advisory lock (flock) held for the job's whole life, dropped by the kernel when the process
    ends, killed or not: a second job on the same output stops at once, naming the first. The lock
    file goes with the work folder at the end of a job, while still locked; a job that locked the
    removed file in the meantime sees that it is no longer the folder's, and tries again.
    """
    lock_path = work / LOCK_NAME
    for _ in range(10):  # a retry needs another job to remove the folder at that very moment
        try:
            work.mkdir(exist_ok=True)
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except FileNotFoundError:  # the folder went between the two calls
            continue
        except OSError as error:  # e.g. a file where the folder should be, or a link as the lock file
            raise UpscaleError(f"cannot lock the job in {work} ({error.strerror}); if no job of {output} runs, "
                               f"remove {work}, or choose another output") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(descriptor)
            os.close(descriptor)
            raise UpscaleError(f"another upscale job ({holder}) is writing {output}; wait for it to end, "
                               "or stop it and continue its job with --resume") from None
        opened = os.fstat(descriptor)
        try:
            named = os.stat(lock_path, follow_symlinks=False)
        except FileNotFoundError:
            named = None
        if named is not None and (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino):
            break
        os.close(descriptor)
    else:
        raise UpscaleError(f"cannot lock the job in {work}: other jobs keep removing it; try again")
    os.ftruncate(descriptor, 0)
    holder = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    os.pwrite(descriptor, json.dumps(holder).encode(), 0)
    return descriptor


def _lock_holder(descriptor: int) -> str:
    """"pid N, started T": the job that holds the lock, as it wrote itself into the lock file."""
    for _ in range(20):  # the holder writes it just after it took the lock
        try:
            holder = json.loads(os.pread(descriptor, 4096, 0))
            return f"pid {holder['pid']}, started {holder['started']}"
        except (ValueError, TypeError, KeyError):
            time.sleep(0.05)
    return "pid unknown"


def sample_aspect_ratio(source: vs.VideoNode) -> Fraction | None:
    """The source's sample aspect ratio (frame 0's `_SARNum`/`_SARDen`); None for square or unknown."""
    props = source.get_frame(0).props
    numerator, denominator = props.get("_SARNum", 0), props.get("_SARDen", 0)
    return Fraction(numerator, denominator) if numerator > 0 and denominator > 0 and numerator != denominator else None


def weights_file(upscale_options: dict) -> Path:
    """The file the job's weights come from: --checkpoint, else the model's installed file."""
    from . import registry

    checkpoint = upscale_options.get("checkpoint")
    return Path(checkpoint) if checkpoint is not None else registry.installed_path(upscale_options["model"])


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
    if not job_file.exists():
        return None
    try:
        recorded = json.loads(job_file.read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _check_same_job(recorded: dict, fingerprint: dict, work: Path) -> None:
    """Refuses to continue the job in `work` with another input, other options or other weights."""
    if {**recorded, "weights": None} != {**fingerprint, "weights": None}:
        raise UpscaleError(f"the work folder {work} belongs to another job (other input or options); "
                           "run the same command as before with --resume, or --overwrite to start over")
    before, now = recorded.get("weights") or {}, fingerprint["weights"]
    if (before.get("size"), before.get("sha256")) != (now["size"], now["sha256"]):
        was = str(before.get("sha256"))[:12]
        raise UpscaleError(f"the weights {now['path']} changed since the job in {work} began (sha256 {was}... then, "
                           f"{now['sha256'][:12]}... now); pass --overwrite to start over with these weights, "
                           "or put the original weights back and --resume")


def segment_length(window: int) -> int:
    """Frames per segment: whole windows of the run (windows are aligned from frame 0 and
    split only inside, so a segment starts where a window does)."""
    return SEGMENT_WINDOWS * window


def _window_of_run(job: Job, source: vs.VideoNode) -> int:
    """Frames per window of the run: max_seq_len, or when that is automatic (0) the plan's, which
    the run then asks for explicitly, so that its segments are whole windows."""
    from . import engine

    return (job.upscale_options.get("max_seq_len", engine.DEFAULT_MAX_SEQ_LEN) or _recorded_window(job)
            or _plan(job, source, cuts=[]).window)


def _recorded_window(job: Job) -> int | None:
    """The window an unfinished job's segments were cut with (its job.json), or None: a resumed
    job keeps it, so its segments still fit."""
    recorded = (_read_job_file(job.work / "job.json") or {}).get("segment_frames")
    return recorded // SEGMENT_WINDOWS if isinstance(recorded, int) and recorded >= SEGMENT_WINDOWS else None


def _plan(job: Job, source: vs.VideoNode, cuts: list[int], max_seq_len: int | None = None):
    """The plan of the job's `Upscale` (on the RGBS clip the job makes) for these scene cuts,
    with `max_seq_len` instead of the job's when given."""
    from . import plan

    options = job.upscale_options | ({"max_seq_len": max_seq_len} if max_seq_len else {})
    try:
        return plan.plan_clip(source.width, source.height, vs.FLOAT, 32, source.num_frames, cuts, **options)
    except ValueError as error:
        raise UpscaleError(_filter_message(error)) from None


def scene_cuts(source: vs.VideoNode) -> list[int]:
    """The frames after frame 0 that start a new scene (scxvid's `_SceneChangePrev`, as the
    filter reads it): decodes the whole clip."""
    analysed = detect_scenes(source)
    return [n for n, frame in enumerate(analysed.frames(close=True))
            if n > 0 and frame.props.get("_SceneChangePrev") == 1]


def _with_flag(command: list[str], flag: str) -> list[str]:
    return command if flag in command else [*command, flag]


def print_plan(job: Job) -> int:
    """The dry run: prints the job's plan, as the run will make it, and writes nothing. Needs
    no weights (the network's sizes come from the registry or the checkpoint file's shapes);
    with scene detection on, decodes the input once to find the cuts that split windows."""
    import tempfile

    from . import registry

    options = job.upscale_options
    with tempfile.TemporaryDirectory() as temporary:
        source = open_source(job, Path(temporary))
        cuts = scene_cuts(source) if job.scene_detect else []
        planned = _plan(job, source, cuts, _recorded_window(job))
    frames, first, window = source.num_frames, planned.first, planned.window
    segment_frames = segment_length(window)
    checkpoint = options.get("checkpoint")
    if checkpoint is not None:
        weights = checkpoint
    elif registry.resolve(options["model"]) is not None:
        weights = f"{options['model']} ({registry.resolve(options['model'])})"
    else:
        weights = f"{options['model']} (not installed: the run downloads it first, to {registry.weights_dir()})"
    if job.scene_detect:
        shown = ", ".join(map(str, cuts[:10])) + (" ..." if len(cuts) > 10 else "")
        scenes = (f"{len(cuts)} cut(s){' at frame ' + shown if cuts else ''} "
                  "(scxvid, in a pass over the whole input); each cut starts a new window")
    else:
        scenes = "not detected (--no-scene-detect)"
    tile = f"{first.tile[0]}x{first.tile[1]}" if first.tile else "none"
    lines = [
        (f"input      {job.input}: {source.width}x{source.height} {source.format.name}, {frames} frames "
         f"at {source.fps.numerator}/{source.fps.denominator} fps"),
        f"output     {job.output}: {4 * source.width}x{4 * source.height}, {frames} frames, "
        + ("PNG frames" if job.folder_out else f"{job.codec} via {ffmpeg_exe()}"),
        f"model      {weights}",
        f"device     {planned.settings.device} ({str(planned.settings.dtype).removeprefix('torch.')})",
        f"scenes     {scenes}",
        (f"windows    {len(planned.windows)}: {min(window, frames)} frames each from frame 0"
         f"{', split at scene cuts' if job.scene_detect else ''} (+{planned.settings.overlap} context frames each side)"),
        f"tiles      {tile}",
        f"memory     about {first.estimated_bytes() / 2**20:.0f} MiB per window (budget {first.budget / 2**20:.0f} MiB)",
        f"segments   {-(-frames // segment_frames)} of {segment_frames} frames in {job.work}",
    ]
    print("\n".join(lines))
    return 0


# -- the command --------------------------------------------------------------------------------

def _tile(words: list[str]):
    if words == ["auto"]:
        return 0
    if words == ["off"]:
        return -1
    if len(words) == 2 and all(word.isdigit() for word in words):
        return [int(word) for word in words]
    raise UpscaleError(f"--tile {' '.join(words)} is not a tile size; use --tile W H, --tile auto or --tile off")


def _ffmpeg_for_help() -> str:
    try:
        return ffmpeg_exe()
    except UpscaleError:
        return "none found"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers `upscale` on the command's subparsers; the parser's `func` runs it."""
    parser = subparsers.add_parser(
        "upscale", help="upscale a video (or a folder of frames) 4x into a video (or a folder of PNGs)",
        description="Upscale INPUT 4x with RealBasicVSR into OUTPUT: a video encoded by ffmpeg (the "
                    f"`ffmpeg` on PATH, else the binary of the imageio-ffmpeg wheel; here: {_ffmpeg_for_help()}), "
                    "with the input's audio "
                    "and subtitles, frame rate and colour tags; or a folder of PNG frames when OUTPUT has no "
                    "extension. YUV inputs are converted to RGB with the matrix and range of their frame "
                    "properties (unspecified: BT.709 from 1280x720 up, else BT.601) and back. The job is written "
                    "in segments to OUTPUT.rbvsr-work/ beside the output: after Ctrl-C, run the same command "
                    "with --resume.")
    parser.add_argument("input", type=Path, help="a video file, or a folder of PNG/JPEG frames (sorted by name)")
    parser.add_argument("output", type=Path, help="the video to write (e.g. out.mp4), or a folder for PNG frames")
    parser.add_argument("--model", default="realbasicvsr", help="registered model (default realbasicvsr)")
    parser.add_argument("--checkpoint", help="a checkpoint file to use instead of the model's installed weights")
    parser.add_argument("--max-seq-len", type=int, default=30, help="frames per window (default 30; 0 = automatic)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument("--precision", choices=["fp32", "fp16", "bf16"], help="default: per device")
    parser.add_argument("--tile", nargs="+", default=["auto"], metavar=("W", "H"),
                        help="tile size in input pixels: W H, auto (default: only when a window does not fit), off")
    parser.add_argument("--codec", default=DEFAULT_CODEC, help=f"ffmpeg video encoder (default {DEFAULT_CODEC})")
    parser.add_argument("--crf", type=int, help=f"quality of x264/x265/vp9/av1 encoders (default {DEFAULT_CRF})")
    parser.add_argument("--start", type=int, default=0, help="first frame to upscale (default 0)")
    parser.add_argument("--end", type=int, help="frame after the last one to upscale (default: the end)")
    parser.add_argument("--fps", type=Fraction, help="frame rate of a folder of frames (default 25), e.g. 24000/1001")
    parser.add_argument("--no-scene-detect", dest="scene_detect", action="store_false",
                        help="do not split windows at scene cuts (found by scxvid by default)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUTPUT (a file, or the NNNNNNNN.png frames of a folder that holds nothing "
                             "else) and start any unfinished job of it over")
    parser.add_argument("--overwrite-folder", action="store_true",
                        help="as --overwrite, for an OUTPUT folder that also holds other files: they are kept, "
                             "only its NNNNNNNN.png frames are replaced")
    parser.add_argument("--resume", action="store_true", help="continue the unfinished job of OUTPUT")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    """Runs `vsrealbasicvsr upscale`; problems the user can fix are one line on stderr, exit 1."""
    try:
        return run_job(_job(args), ["vsrealbasicvsr", *sys.argv[1:]], args.dry_run)
    except UpscaleError as error:
        print(f"vsrealbasicvsr upscale: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before the first segment started: there is nothing to keep
        print("upscale: interrupted before any frame was computed", file=sys.stderr)
        return 128 + signal.SIGINT


def _job(args: argparse.Namespace) -> Job:
    source, output = args.input, args.output
    if not source.exists():
        raise UpscaleError(f"input {source} does not exist; check the path")
    folder_out = is_folder_output(output)
    work = output.parent / (output.name + ".rbvsr-work")
    parent = output.resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UpscaleError(f"cannot write into {parent}; choose an output in a folder you can write to")
    overwrite = args.overwrite or args.overwrite_folder
    _check_output(source, output, work, folder_out, overwrite, args.overwrite_folder)
    if not folder_out and args.codec not in video_encoders():
        raise UpscaleError(f"unknown video codec {args.codec!r} for this ffmpeg ({ffmpeg_exe()}); "
                           "use one that `ffmpeg -encoders` lists, e.g. libx264, libx265, libsvtav1, ffv1")
    if args.crf is not None and (folder_out or args.codec not in CRF_CODECS):
        target = "PNG frames" if folder_out else args.codec
        raise UpscaleError(f"--crf applies to {', '.join(CRF_CODECS)}, not to {target}; leave it out")
    options = dict(model=args.model, checkpoint=args.checkpoint, max_seq_len=args.max_seq_len,
                   device=args.device, precision=args.precision, tile=_tile(args.tile))
    options = {key: value for key, value in options.items() if value is not None}
    return Job(input=source, output=output, folder_out=folder_out, work=work, codec=args.codec, crf=args.crf,
               start=args.start, end=args.end, fps=args.fps, scene_detect=args.scene_detect,
               upscale_options=options, quiet=args.quiet, overwrite=overwrite, resume=args.resume)


def _check_output(source: Path, output: Path, work: Path, folder_out: bool, overwrite: bool,
                  overwrite_folder: bool) -> None:
    """Refuses an output that is the input, or that holds what the job must not replace: a file
    unless --overwrite; in a folder, the frame files (FRAME_NAME) unless --overwrite, other files
    unless --overwrite-folder (the join then replaces only frame files)."""
    if output.exists() and os.path.samefile(source, output):  # also through links
        raise UpscaleError(f"the output {output} is the input {source}; choose another output")
    if work.exists() and source.resolve().is_relative_to(work.resolve()):
        raise UpscaleError(f"the input {source} is inside {work}, the work folder of {output}; move it out first")
    if overwrite_folder and not folder_out:
        raise UpscaleError(f"--overwrite-folder is for an OUTPUT folder of PNG frames, not {output}; use --overwrite")
    if not output.exists():
        return
    if not folder_out:
        if not overwrite:
            raise UpscaleError(f"{output} exists; pass --overwrite to replace it")
        return
    if not output.is_dir():
        raise UpscaleError(f"{output} is a file, but an OUTPUT without an extension is a folder of PNG frames; "
                           "give a video OUTPUT its extension (e.g. .mp4), or choose another folder")
    names = sorted(path.name for path in output.iterdir())
    others = [name for name in names if not FRAME_NAME.fullmatch(name)]
    if others and not overwrite_folder:
        raise UpscaleError(f"{output} holds files this command does not write (e.g. {others[0]}); choose a new "
                           "or empty folder, or pass --overwrite-folder to write the frames beside them")
    if names and not overwrite:
        raise UpscaleError(f"{output} exists; pass --overwrite to replace its frames")
