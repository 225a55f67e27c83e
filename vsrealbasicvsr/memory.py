"""How much memory a window takes, and the largest window and tile that fit a budget.

The model (bytes for a window of T frames of h x w low-resolution pixels, one network of
`mid_channels` channels, `b` bytes per element at the chosen precision):

    peak(T, h, w) = h * w * b * (T * PER_FRAME(mid) + FIXED(mid)) + weights

- PER_FRAME: what every frame of the window keeps while the window runs: the input (3), the
  cleaned input (3), two flows (2 + 2), the backward-propagation features (mid), plus the
  transient cleaning and SPyNet activations, which run batched over all frames (about 3 * mid
  and 80 channels at full resolution for SPyNet's first convolutions).
- FIXED: one frame's reconstruction at a time: the x2 and x4 pixel-shuffle stages and the HR
  convolutions (about 4 * mid + 64 channels at 2x2 and 3 * 64 channels at 4x4 the pixels).

The coefficients were calibrated on the CPU (fp32, RealBasicVSRNet(), peak RSS of a fresh process
for T in {2, 4, 8, 16} at 64x64 and 96x96; `bench/calibrate_memory.py` re-measures them) and then
rounded up. SAFETY_MARGIN covers the allocator's fragmentation and what the model leaves out.
"""
from __future__ import annotations

import math
import os

SAFETY_MARGIN = 1.3
MIN_TILE = 64  # the network was designed for frames of at least 64x64
MAX_AUTO_WINDOW = 60  # longer windows buy nothing measurable (see docs/WINDOWS_AND_TILES.md)
MIN_AUTO_WINDOW = 8  # below this, tiling costs less quality than a shorter recurrence


def per_frame_channels(mid_channels: int) -> float:
    """Elements kept per low-resolution pixel for each frame of a window."""
    return 3 + 3 + 4 + mid_channels + 3 * mid_channels + 80


def fixed_channels(mid_channels: int) -> float:
    """Elements per low-resolution pixel for the one frame being reconstructed."""
    return (4 * mid_channels + 64) * 4 + 3 * 64 * 16


def window_bytes(frames: int, height: int, width: int, mid_channels: int, element_bytes: int) -> int:
    """Estimated peak bytes of one window, safety margin included."""
    elements = height * width * (frames * per_frame_channels(mid_channels) + fixed_channels(mid_channels))
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
