"""Per-frame time of each network of the family through the engine (the product path) against the
bare network's `stream` on the same frames, interleaved, on the CPU.

    .venv/bin/python bench/family.py [--size 64x64] [--frames 6] [--rounds 3]

Full-size networks as the official releases (RealBasicVSR c64b20, BasicVSR c64b30, IconVSR c64b30,
BasicVSR++ c64n7) with random weights: speed does not depend on them. The engine runs as the
filter runs it (channels-last, one frame at a time through SPyNet and the other batched steps,
its own torch thread, outputs converted to the clip's format); the bare network runs `stream`
twice: placed as the engine places it (channels-last but SPyNet, one frame at a time through the
batched steps, as bench/pipeline.py's "bare"), and in PyTorch's default layout. Rounds alternate
the three, so a loaded machine slows all alike: the figures to read are the ratios. MMagic's own
networks (the reference order) are not measured here: mmcv does not install on this torch
(docs/BENCHMARKS.md).
"""

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vsrealbasicvsr.engine.engine import Engine, channels_last_but_spynet  # noqa: E402
from vsrealbasicvsr.models import BasicVSRNet, BasicVSRPlusPlusNet, IconVSRNet, RealBasicVSRNet  # noqa: E402

NETWORKS = {
    "RealBasicVSR": RealBasicVSRNet,
    "BasicVSR": BasicVSRNet,
    "IconVSR": IconVSRNet,
    "BasicVSR++": BasicVSRPlusPlusNet,
}


def views(frames: np.ndarray):
    _, _, _, width = frames.shape
    return [(*(memoryview(np.ascontiguousarray(frame[p])) for p in range(3)), width * 4) for frame in frames]


def engine_seconds(engine, frames) -> float:
    start = time.perf_counter()
    for _ in engine.run(views(frames), 0, 0, 0):
        pass
    return time.perf_counter() - start


def bare_seconds(network, frames, batch_frames=None) -> float:
    lqs = torch.from_numpy(frames).unsqueeze(0)
    start = time.perf_counter()
    with torch.inference_mode():
        for out in network.stream(lqs, batch_frames=batch_frames):
            out.clamp(0, 1).numpy()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="64x64", help="WxH of the frames")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--networks", default=",".join(NETWORKS))
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    frames = np.random.default_rng(0).random((args.frames, 3, height, width), dtype=np.float32)
    print(
        "| network | engine ms/frame | bare, engine's layout | bare, default layout | engine / bare (engine's "
        f"layout) | engine / bare (default layout) | ({args.size}, {args.frames} frames) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.networks.split(","):
            torch.manual_seed(0)
            network = NETWORKS[name]().eval()
            checkpoint = Path(folder) / f"{name}.pth"
            torch.save(network.state_dict(), checkpoint)
            engine = Engine(
                width, height, 1, 32, checkpoint=str(checkpoint), device="cpu", max_seq_len=args.frames, tile=-1
            )
            placed = channels_last_but_spynet(copy.deepcopy(network))
            engine_seconds(engine, frames[:2])  # warm-up: kernels, the torch thread
            bare_seconds(placed, frames[:2], 1)
            bare_seconds(network, frames[:2])
            ours, bare_placed, bare = [], [], []
            for _ in range(args.rounds):
                ours.append(engine_seconds(engine, frames))
                bare_placed.append(bare_seconds(placed, frames, 1))
                bare.append(bare_seconds(network, frames))
            per_frame = 1000 / args.frames
            ratios = [statistics.median(o / b for o, b in zip(ours, of, strict=True)) for of in (bare_placed, bare)]
            print(
                f"| {name} | {statistics.median(ours) * per_frame:.0f} "
                f"| {statistics.median(bare_placed) * per_frame:.0f} | {statistics.median(bare) * per_frame:.0f} "
                f"| {ratios[0]:.2f} | {ratios[1]:.2f} | |",
                flush=True,
            )


if __name__ == "__main__":
    main()
