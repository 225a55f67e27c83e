"""Finding and running ffmpeg, and the options the job encodes with: every ffmpeg command line
starts in `ffmpeg_command`, and ffmpeg's concat lists are written by `concat_input`."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..safe_files import write_new
from .errors import UpscaleError

# Output containers that only take mov_text subtitles.
MP4_SUFFIXES = (".mp4", ".m4v", ".mov")
# No random ids or dates in the files, so a resumed job writes the same bytes as one that was not.
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]
# The encoders that take --crf, and its highest value for each (0 is the best quality).
CRF_CODECS = {"libx264": 51, "libx264rgb": 51, "libx265": 51, "libvpx-vp9": 63, "libaom-av1": 63, "libsvtav1": 63}
# The containers a video OUTPUT may be: what ffmpeg writes video streams into by extension
# (image, animation and raw formats such as .png, .gif or .y4m take no encoded video).
VIDEO_SUFFIXES = (".mkv", ".mp4", ".m4v", ".mov", ".webm", ".avi", ".nut", ".ts", ".m2ts", ".mts")
DEFAULT_CODEC, DEFAULT_CRF = "libx264", 18


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


def ffmpeg_command(*args: str, loglevel: str = "error") -> list[str]:
    """An ffmpeg command line with `args`: no banner, never reading stdin (it would take the
    terminal's keys), output files replaced (they are new files of ours), messages from `loglevel` up."""
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", loglevel, "-y", *args]


def describe(path: Path) -> str:
    """What ffmpeg sees in `path` (its streams, one line each), without decoding: the stderr of
    `ffmpeg -i PATH`, which ends with ffmpeg's complaint that no output was given."""
    return subprocess.run(
        ffmpeg_command("-i", ffmpeg_path(path), loglevel="info"), capture_output=True, text=True, check=False
    ).stderr


def video_packets(path: Path) -> int:
    """The frames of the first video stream of the file `path`, counted from its packets without
    decoding; 0 when ffmpeg cannot read it."""
    copy_to_nowhere = ffmpeg_command(
        "-progress", "pipe:1", "-i", ffmpeg_path(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"
    )
    result = subprocess.run(copy_to_nowhere, capture_output=True, text=True, check=False)
    counts = [line.removeprefix("frame=") for line in result.stdout.splitlines() if line.startswith("frame=")]
    return int(counts[-1]) if result.returncode == 0 and counts and counts[-1].isdigit() else 0


def concat_input(listing: Path, names: list[str], durations: list[float] | None = None) -> list[str]:
    """Writes ffmpeg's concat list of the files `names` (in `listing`'s folder, named relative to
    it: names of our own, which the list's parser reads without quotes) into a new file
    `listing`, each with its duration in seconds when given; returns the input options that
    read it."""
    lines = [f"file {name}\n" for name in names]
    if durations is not None:
        lines = [f"{line}duration {duration:.9f}\n" for line, duration in zip(lines, durations, strict=True)]
    write_new(listing, "".join(lines).encode())
    return ["-f", "concat", "-safe", "0", "-i", ffmpeg_path(listing)]


def ffmpeg_path(path: Path) -> str:
    """`path` as an ffmpeg argument: absolute, so that a name starting with `-` is never read as an
    option, nor one with a colon as a protocol."""
    return os.path.abspath(path)


def run_ffmpeg(args: list[str], what: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise UpscaleError(f"ffmpeg failed to {what}: {last}")


def video_encoders() -> set[str]:
    listing = subprocess.run(ffmpeg_command("-encoders"), capture_output=True, text=True, check=False).stdout
    return {line.split()[1] for line in listing.splitlines() if line.startswith(" V") and len(line.split()) > 1}


def encoder_options(codec: str, crf: int | None) -> list[str]:
    options = ["-c:v", codec]
    if codec in CRF_CODECS:
        options += ["-crf", str(DEFAULT_CRF if crf is None else crf)]
        if codec == "libvpx-vp9":
            options += ["-b:v", "0"]  # constant quality, no bitrate cap
    return options


def unreadable(path: Path) -> str:
    """Why bestsource could not open `path`, from what ffmpeg sees in it."""
    probe = describe(path)
    if "Video:" in probe:
        return f"{path} has no video frames that can be decoded; pass a video with at least one frame"
    if "Stream #" in probe:
        return f"{path} has no video stream; pass a video file or a folder of PNG/JPEG frames"
    return f"{path} is not a video; pass a video file or a folder of PNG/JPEG frames"


def encode_problem(codec: str, crf: int | None, width: int, height: int, pixel_format: str, suffix: str) -> str | None:
    """Why ffmpeg cannot encode video of this size and pixel format with `codec` into a file
    ending in `suffix` (its last line), or None when it can: one frame tried, before hours of
    computing end in a file that cannot be written."""
    with tempfile.TemporaryDirectory(prefix="vsrealbasicvsr-probe-") as folder:
        result = subprocess.run(
            ffmpeg_command(
                "-f",
                "lavfi",
                "-i",
                f"color=size={width}x{height}:rate=25",
                "-frames:v",
                "1",
                "-pix_fmt",
                pixel_format,
                *encoder_options(codec, crf),
                os.path.join(folder, "probe" + suffix),
            ),
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode == 0:
        return None
    return (result.stderr.strip().splitlines() or ["(no message)"])[-1]
