"""Memory that does not grow with the clip, counted without timing anything: the bytes held on the
heap and by VapourSynth's frames after many windows against after a few (issue 26).

The resident size itself is left to bench/memory_slope.py (docs/MEMORY.md): it moves with the
allocator and the machine, these counts do not.
"""

import ctypes
import ctypes.util
import subprocess

import imageio_ffmpeg
import pytest
import vapoursynth as vs

from tests.conftest import GOLDEN_DIR
from vsrealbasicvsr import job
from vsrealbasicvsr.job import source


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks")
        + ("fordblks", "keepcost")
    ]


def heap_in_use() -> int:
    """Bytes the C heap has handed out and not had back (glibc's mallinfo2): what bestsource's
    decoded frames, VapourSynth's frames and every other native allocation hold right now."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc >= 2.33 (mallinfo2)")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def make_clip(path, size, frames):
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate=25",
            "-frames:v",
            str(frames),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )
    return path


def test_the_jobs_source_keeps_what_the_windows_read_again_not_the_clip(tmp_path):
    # bestsource keeps every decoded frame up to 100 MB by default: 300 frames of 320x240 would
    # be 35 MB more on the heap. The job's source keeps two windows with their context.
    clip_path = make_clip(tmp_path / "clip.mp4", "320x240", 400)
    spec = job.new_spec(clip_path, tmp_path / "out.mkv", {"max_seq_len": 10, "overlap": 2}, codec="ffv1", quiet=True)
    clip = source.open_video(spec, clip_path)
    frame_bytes = 320 * 240 * 3 // 2
    for _ in clip[:100].frames(close=True):
        pass
    before = heap_in_use()
    for _ in clip[100:].frames(close=True):
        pass
    grown = heap_in_use() - before
    assert grown < 50 * frame_bytes, f"the heap grew by {grown} bytes over 300 frames ({grown // 300} per frame)"


def test_the_filter_holds_no_frames_of_windows_done(tmp_path):
    # Each input frame is its own allocation (std.Expr makes a new frame per request; BlankClip
    # alone hands out one shared frame, which hides a reference kept to each input frame).
    core = vs.core
    blank = core.std.BlankClip(format=vs.RGBS, width=48, height=32, length=200, color=[0.2, 0.4, 0.6])
    clip = core.std.Expr(blank, "x 0.9 *")
    upscaled = core.rbvsr.Upscale(
        clip, checkpoint=str(GOLDEN_DIR / "realbasicvsr_tiny.pth"), max_seq_len=4, overlap=2, device="cpu"
    )
    used = {}
    for n, _ in enumerate(upscaled.frames(close=True)):
        if n in (32, 64):  # from when the filter's caches are full, 8 windows apart
            used[n] = core.used_cache_size
        if n == 64:
            break
    input_frame = 48 * 32 * 3 * 4
    assert used[64] - used[32] < 8 * input_frame, f"VapourSynth's frames grew from {used[32]} to {used[64]} bytes"


def test_the_jobs_graph_sets_vapoursynths_cache_to_what_its_windows_need(tmp_path):
    from vsrealbasicvsr.job import graph

    core = vs.core
    clip_path = make_clip(tmp_path / "clip.mp4", "64x48", 30)
    spec = job.new_spec(clip_path, tmp_path / "out.mkv", {"max_seq_len": 10, "overlap": 2}, codec="ffv1", quiet=True)
    default = core.max_cache_size
    try:
        graph.upscaled_clip(
            source.open_video(spec, clip_path),
            scene_detect=False,
            checkpoint=str(GOLDEN_DIR / "realbasicvsr_tiny.pth"),
            max_seq_len=10,
            overlap=2,
            device="cpu",
        )
        two_windows_out = 2 * 10 * (64 * 4) * (48 * 4) * 3 * 4
        # the filter's own windows fit, and not much more: half the machine's memory by default
        assert two_windows_out <= core.max_cache_size * 2**20 <= 4 * two_windows_out
    finally:
        core.max_cache_size = default
