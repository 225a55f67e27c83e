"""Resident memory of one engine over many windows, without VapourSynth, a source or ffmpeg
(docs/MEMORY.md): does the engine itself, with a given backend, grow with the clip?

    .venv/bin/python bench/engine_memory.py --backend openvino --windows 150

The tests' tiny RealBasicVSR checkpoint, frames of --size with fresh random samples for every
window (each its own allocation, as a decoded source's), windows of 10 frames with 8 context
frames each side, on the CPU. Every --every windows it prints the process's resident memory
(VmRSS) and the C heap in use (glibc's mallinfo2: what malloc handed out and not freed back;
OpenVINO's own TBB allocator is outside it, in the RSS only).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import time
from pathlib import Path

import numpy as np

from vsrealbasicvsr.engine.engine import Engine

CHECKPOINT = Path(__file__).resolve().parents[1] / "tests" / "data" / "realbasicvsr_tiny.pth"
WINDOW, CONTEXT = 10, 8


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]


def heap_in_use_kb() -> int:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2().uordblks // 1024


def resident_kb() -> int:
    status = Path(f"/proc/{os.getpid()}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="torch", help="torch or openvino")
    parser.add_argument("--windows", type=int, default=150)
    parser.add_argument("--every", type=int, default=25, help="windows between samples")
    parser.add_argument("--size", default="48x32")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.split("x"))
    engine = Engine(
        width,
        height,
        1,
        32,
        checkpoint=str(CHECKPOINT),
        device="cpu",
        backend=args.backend,
        max_seq_len=WINDOW,
        overlap=CONTEXT,
        tile=-1,
    )
    load = os.getloadavg()
    print(f"{args.backend}, {args.size}, load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    random = np.random.default_rng(0)
    start = time.perf_counter()
    for window in range(args.windows):
        frames = [random.random((3, height, width), dtype=np.float32) for _ in range(WINDOW + 2 * CONTEXT)]
        views = [(*(memoryview(plane) for plane in frame), width * 4) for frame in frames]
        for _ in engine.run(views, WINDOW * window, CONTEXT, CONTEXT):
            pass
        if window % args.every == 0 or window == args.windows - 1:
            print(
                f"window {window:4d} (frame {WINDOW * (window + 1):5d}), {time.perf_counter() - start:5.0f} s: "
                f"RSS {resident_kb()} KB, C heap in use {heap_in_use_kb()} KB",
                flush=True,
            )


if __name__ == "__main__":
    main()
