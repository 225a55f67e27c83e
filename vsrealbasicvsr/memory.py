"""How much memory a window takes, and the largest window and tile that fit a budget.

The model (bytes for a window of T frames of h x w low-resolution pixels, one network of
`mid_channels` channels, `b` bytes per element at the chosen precision) is the largest of the
network's phases, each in elements per low-resolution pixel (`peak_elements_per_pixel`):

    peak(T, h, w) = SAFETY_MARGIN * h * w * b * max(cleaning, flows, kept + reconstruction)

- cleaning: batched over all frames (6 + 3 * mid per frame);
- flows: SPyNet batched over all frame pairs, both directions (6 + 100 per frame);
- kept: what every frame keeps through propagation (input, cleaned input, two flows, backward
  features: 10 + mid per frame), plus one frame's reconstruction at a time (64-channel HR
  convolutions at 4x4 the pixels: (4 * mid + 64) * 4 + 3 * 64 * 16).

Calibration (docs/MEMORY.md; `python -m vsrealbasicvsr.memory` re-measures): the peak RSS rise of
a fresh CPU process, fp32, RealBasicVSRNet() (mid 64), T in {2, 4, 8} at 64x64 and 96x96, was
0.74-0.81 of the model before the margin (52-137 MiB measured). Only mid 64 and fp32 on the CPU
were measured; SAFETY_MARGIN covers the allocator's fragmentation, cuDNN workspaces on CUDA and
what the model leaves out.
"""
from __future__ import annotations

import math
import os

SAFETY_MARGIN = 1.5
MIN_TILE = 64  # the network was designed for frames of at least 64x64
MAX_AUTO_WINDOW = 60  # the recurrence's benefit has long saturated by then
MIN_AUTO_WINDOW = 8  # a choice: below this, tile rather than shorten the recurrence further


def peak_elements_per_pixel(frames: int, mid_channels: int) -> float:
    """Elements per low-resolution pixel at the peak of a window of `frames` frames."""
    cleaning = frames * (6 + 3 * mid_channels)
    flows = frames * (6 + 100)
    kept = frames * (3 + 3 + 4 + mid_channels)
    reconstruction = (4 * mid_channels + 64) * 4 + 3 * 64 * 16
    return max(cleaning, flows, kept + reconstruction)


def window_bytes(frames: int, height: int, width: int, mid_channels: int, element_bytes: int) -> int:
    """Estimated peak bytes of one window, safety margin included."""
    elements = height * width * peak_elements_per_pixel(frames, mid_channels)
    return int(elements * element_bytes * SAFETY_MARGIN)


def available_bytes(device) -> int:
    """What the device has free now: CUDA's free memory, or the host's MemAvailable."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def largest_window(budget: int, height: int, width: int, mid_channels: int, element_bytes: int,
                   limit: int = MAX_AUTO_WINDOW) -> int:
    """The most frames (at most `limit`) whose window fits `budget`; 0 when not even one does."""
    frames = 0
    while frames < limit and window_bytes(frames + 1, height, width, mid_channels, element_bytes) <= budget:
        frames += 1
    return frames


def largest_tile(budget: int, frames: int, height: int, width: int, mid_channels: int,
                 element_bytes: int, tile_overlap: int) -> tuple[int, int] | None:
    """The largest tile (width, height) at most the frame's size, both at least MIN_TILE, with
    which a window of `frames` frames fits `budget` (each tile is computed with `tile_overlap`
    extra pixels on each side); None when even MIN_TILE does not fit. Tiles keep the frame's
    aspect ratio, so there are few and evenly shaped."""
    for scale in (1 / 2 ** (k / 2) for k in range(1, 40)):
        tile_w = max(MIN_TILE, min(width, math.ceil(width * scale / 8) * 8))
        tile_h = max(MIN_TILE, min(height, math.ceil(height * scale / 8) * 8))
        computed_w = min(width, tile_w + 2 * tile_overlap)
        computed_h = min(height, tile_h + 2 * tile_overlap)
        if window_bytes(frames, computed_h, computed_w, mid_channels, element_bytes) <= budget:
            return tile_w, tile_h
        if tile_w == MIN_TILE and tile_h == MIN_TILE:
            return None
    return None


def measure_peak(frames: int, height: int, width: int, mid_channels: int = 64) -> int:
    """Peak host bytes of one fp32 window on the CPU, measured in a fresh process: the rise of
    the peak resident set size (getrusage) over the resident size before the window runs, with
    glibc's mmap threshold fixed so freed large buffers go back to the system at once."""
    import subprocess
    import sys

    script = f"""
import resource, torch
from vsrealbasicvsr.models import RealBasicVSRNet
torch.set_grad_enabled(False)
net = RealBasicVSRNet(mid_channels={mid_channels}).eval()
lqs = torch.rand(1, {frames}, 3, {height}, {width})
net(lqs[:, :2, :, :64, :64])  # warm up the allocator and kernels on a small window
page = resource.getpagesize()
before = int(open('/proc/self/statm').read().split()[1]) * page
resource_peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
assert resource_peak() < before + 64 * 2**20, 'warm-up peak too high to measure from'
for out in net.stream(lqs):
    del out
print(resource_peak() - before)
"""
    environment = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(1 << 20), OMP_NUM_THREADS="2")
    result = subprocess.run([sys.executable, "-c", script], env=environment, check=True,
                            capture_output=True, text=True)
    return int(result.stdout.split()[-1])


def calibrate(mid_channels: int = 64, sizes=((64, 64), (96, 96)), lengths=(2, 4, 8)) -> None:
    """Print measured peaks next to `window_bytes` without its margin:
    `python -m vsrealbasicvsr.memory` (about 5 minutes on 2 cores)."""
    for height, width in sizes:
        for frames in lengths:
            peak = measure_peak(frames, height, width, mid_channels)
            model = window_bytes(frames, height, width, mid_channels, 4) / SAFETY_MARGIN
            print(f"{width}x{height} T={frames}: measured {peak / 2**20:7.1f} MiB, model {model / 2**20:7.1f} MiB "
                  f"(ratio {peak / model:.2f})")


if __name__ == "__main__":
    calibrate()
