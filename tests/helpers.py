"""Helpers that several test modules share (fixtures live in conftest.py)."""

import math
import socket
import time

import numpy as np
import vapoursynth as vs

from vsrealbasicvsr import job


def spec_of(clip, output, checkpoint=None, *, max_seq_len=2, **flags) -> job.JobSpec:
    """A job of `vsrealbasicvsr upscale clip output` on the CPU, untiled, FFV1, quiet; `checkpoint`
    (the tests' tiny weights) instead of the model's installed weights when given."""
    options = {"model": "realbasicvsr", "max_seq_len": max_seq_len, "device": "cpu", "tile": -1}
    if checkpoint is not None:
        options["checkpoint"] = str(checkpoint)
    return job.new_spec(clip, output, options, codec="ffv1", quiet=True, **flags)


def one_line_error(result, message: str = "", command: str = "upscale") -> None:
    """`result` (a finished `vsrealbasicvsr COMMAND` process) failed with exit status 1 and one
    line on stderr, `vsrealbasicvsr COMMAND: error: ...`, that holds `message`."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stderr.endswith("\n"), result.stderr
    assert lines[0].startswith(f"vsrealbasicvsr {command}: error: ") and message in lines[0], result.stderr


def psnr(a, b) -> float:
    """PSNR in dB of two arrays (or CPU tensors) of samples in [0, 1]."""
    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, seconds: float) -> None:
    """Returns once something accepts connections on 127.0.0.1:port; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listened on port {port} within {seconds} s")


def automatic_window(budget: int, width: int, height: int, mid: int, architecture: str, scale: int, overlap: int):
    """The longest window (1 .. MAX_AUTO_WINDOW frames) that the memory model's terms for
    `architecture` fit in `budget`, with `overlap` context frames a side: on the CPU, fp32, one
    frame at a time through the non-recurrent steps, untiled."""
    from vsrealbasicvsr.engine import memory

    fits = [
        frames
        for frames in range(1, memory.MAX_AUTO_WINDOW + 1)
        if memory.window_bytes(frames + 2 * overlap, height, width, mid, 4, 1, architecture, scale) <= budget
    ]
    return max(fits, default=1)


def clip_of(frames: np.ndarray) -> vs.VideoNode:
    """(T, 3, h, w) float32 -> an RGBS clip with these frames."""
    t, _, h, w = frames.shape
    blank = vs.core.std.BlankClip(width=w, height=h, format=vs.RGBS, length=t)

    def fill(n, f):
        out = f.copy()
        for p in range(3):
            np.asarray(out[p])[:] = frames[n, p]
        return out

    return vs.core.std.ModifyFrame(blank, blank, fill)
