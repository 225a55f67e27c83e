"""The C heap in use over a long job, in the job's own process (docs/MEMORY.md): does the whole
pipeline that the command, the page and Ray's workers run grow with the clip, below what resident
memory can show?

    .venv/bin/python bench/job_memory.py --backend openvino --frames 3000 --warmup 1000

`bench/memory_slope.py` reads resident memory from outside, and the allocator moves it by tens
of MB at a time, far more than one input frame (18 KB at 48x32) per 1,000 frames. Here the job
runs through the job API (`job.run`, as `vsrealbasicvsr upscale`: bestsource, the graph with its
caches set, `core.rbvsr.Upscale`, segments encoded by ffmpeg in processes of their own), and its
progress callback reads, every --every frames, glibc's C heap in use (mallinfo2: what malloc
handed out and did not get back, to the byte; OpenVINO's own TBB allocator and Python's object
arenas are outside it, in the RSS only) and the resident memory (VmRSS).

The clip: ffmpeg's testsrc2 at --size, H.264, as in memory_slope.py; the tests' tiny RealBasicVSR
checkpoint, windows of 10 frames with 8 context frames, on the CPU, no scene detection.
Reported: both slopes after --warmup frames, in KB per 1,000 frames, beside one input frame's size
in RGBS.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from engine_memory import heap_in_use_kb, resident_kb
from memory_slope import CHECKPOINT, make_clip, slope

from vsrealbasicvsr import job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="torch", help="torch or openvino")
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=1000, help="frames left out of the slopes")
    parser.add_argument("--every", type=int, default=100, help="frames between samples")
    parser.add_argument("--size", default="48x32")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.split("x"))
    frame_kb = width * height * 3 * 4 / 1024
    load = os.getloadavg()
    print(f"{args.backend}, testsrc2 {args.size} H.264, {args.frames} frames; one RGBS frame is {frame_kb:.1f} KB")
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs", flush=True)
    heap, rss = [], []
    next_sample = [args.every]
    start = time.monotonic()

    def sample(event: job.JobProgress) -> None:
        if event.frames_done >= next_sample[0]:
            next_sample[0] += args.every
            heap.append((event.frames_done, heap_in_use_kb()))
            rss.append((event.frames_done, resident_kb()))
            if event.frames_done % (10 * args.every) < args.every:
                print(
                    f"frame {event.frames_done:6d}, {time.monotonic() - start:5.0f} s: C heap in use "
                    f"{heap[-1][1]} KB, RSS {rss[-1][1]} KB",
                    flush=True,
                )

    with tempfile.TemporaryDirectory(prefix="rbvsr-job-memory-") as temporary:
        folder = Path(temporary)
        clip = folder / "clip.mp4"
        make_clip(clip, args.size, args.frames)
        options = {
            "model": "realbasicvsr",
            "checkpoint": str(CHECKPOINT),
            "max_seq_len": 10,
            "overlap": 8,
            "device": "cpu",
            "backend": args.backend,
            "tile": -1,
        }
        spec = job.new_spec(clip, folder / "out.mkv", options, codec="ffv1", scene_detect=False, quiet=True)
        job.run(spec, progress=sample)
    for name, samples in (("C heap in use", heap), ("RSS", rss)):
        per_1000, used, first_mb, last_mb = slope(samples, args.warmup)
        print(
            f"{name:13s} slope {per_1000:8.1f} KB per 1,000 frames ({per_1000 / frame_kb:.2f} input frames), "
            f"{first_mb * 1024:.0f} -> {last_mb * 1024:.0f} KB, frames {args.warmup}-{samples[-1][0]} ({used} samples)"
        )
    print(f"load average after: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")


if __name__ == "__main__":
    main()
