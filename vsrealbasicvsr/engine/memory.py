"""How much memory a window takes, and the largest window and tile that fit a budget.

The model (bytes for a window of T frames of h x w low-resolution pixels, one network of
`mid_channels` channels, `b` bytes per element at the chosen precision, the steps that need no
recurrence run `B` frames at a time) is the larger of the network's two phases, each in elements
per low-resolution pixel (`peak_elements_per_pixel`):

    peak(T, h, w) = SAFETY_MARGIN * h * w * b * max(batched, propagation)

- batched: cleaning (6 + 4 * mid per frame) or SPyNet, both directions (6 + 100 per frame
  pair), for B frames at once, on top of the inputs (6 per frame);
- propagation: what every frame keeps (input, cleaned input, two flows, backward features:
  10 + mid per frame), plus one frame's reconstruction at a time (64-channel HR convolutions at
  4x4 the pixels: (4 * mid + 64) * 4 + 3 * 64 * 16).

The engine runs B = 1 on the CPU and, on CUDA, as many frames as fit under one frame's
reconstruction (`batch_frames`), so its peak grows with T only by the kept 10 + mid per frame;
MMEditing batches all T frames, whose cleaning dominates long windows (docs/MEMORY.md has the
measured growth).

Calibration (docs/MEMORY.md; `python -m vsrealbasicvsr.engine.memory` re-measures): the peak RSS rise
of a fresh CPU process, fp32, RealBasicVSRNet(), IconVSRNet and BasicVSRPlusPlusNet (mid 64,
`--architecture`); see docs/MEMORY.md for the figures. Only mid 64 on the CPU was measured (and
bf16 for RealBasicVSR); SAFETY_MARGIN covers the allocator's
fragmentation, cuDNN workspaces on CUDA and what the model leaves out.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

SAFETY_MARGIN = 1.5
MIN_TILE = 64  # the network was designed for frames of at least 64x64
MAX_AUTO_WINDOW = 60  # the recurrence's benefit has long saturated by then
MIN_AUTO_WINDOW = 8  # a choice: below this, tile rather than shorten the recurrence further


# The networks of the family differ in what a window keeps per frame and in one frame's
# reconstruction; the terms for IconVSR and BasicVSR++ follow from their structure (the tensors
# each keeps), and their x4 networks' measured peaks are below them (docs/MEMORY.md). x1
# BasicVSR++ computes its features and flows at a quarter of the frame's size each way: 1/16 of
# the elements per input pixel.
QUARTER_SIZE = 16


def batched_elements_per_frame(mid_channels: int) -> int:
    """Elements per pixel per frame of the steps that need no recurrence (cleaning, SPyNet)."""
    cleaning = 6 + 4 * mid_channels
    flows = 6 + 100
    return max(cleaning, flows)


def kept_elements_per_frame(mid_channels: int, architecture: str = "BasicVSRNet", scale: int = 4) -> float:
    """Elements per low-resolution pixel that a window keeps for each of its frames until the
    frame is handed out: the input (and RealBasicVSR's cleaned input), flows both ways, and the
    features that wait for a later branch."""
    if architecture == "BasicVSRPlusPlusNet":
        # the frame's own features and those of the first three branches
        waiting = 4 + 4 * mid_channels
        return 3 + (waiting / QUARTER_SIZE if scale == 1 else waiting)
    kept = 3 + 3 + 4 + mid_channels
    if architecture == "IconVSRNet":
        kept += 64 / 5  # EDVR's 64 refill channels at every 5th frame (the default keyframe_stride)
    return kept


def reconstruction_elements(mid_channels: int, architecture: str = "BasicVSRNet", scale: int = 4) -> float:
    """Elements per low-resolution pixel of one frame's reconstruction (fusion, x4 upsampling)."""
    upsampling = (4 * mid_channels + 64) * 4 + 3 * 64 * 16
    if architecture != "BasicVSRPlusPlusNet":
        return upsampling
    # its five feature maps concatenated and a trunk of residual blocks before the upsampling
    elements = 5 * mid_channels + 2 * mid_channels + upsampling
    return elements / QUARTER_SIZE if scale == 1 else elements


def batch_frames(mid_channels: int) -> int:
    """Frames cleaned (and frame pairs given to SPyNet) at once: as many as fit under one
    frame's reconstruction, so batching never raises the window's peak."""
    return max(1, reconstruction_elements(mid_channels) // batched_elements_per_frame(mid_channels))


def peak_elements_per_pixel(
    frames: int, mid_channels: int, batch: int | None = None, architecture: str = "BasicVSRNet", scale: int = 4
) -> float:
    """Elements per low-resolution pixel at the peak of a window of `frames` frames whose
    non-recurrent steps run `batch` frames at a time (None: all at once)."""
    batch = frames if batch is None else min(frames, batch)
    batched = frames * 6 + batch * batched_elements_per_frame(mid_channels)
    propagation = frames * kept_elements_per_frame(mid_channels, architecture, scale) + reconstruction_elements(
        mid_channels, architecture, scale
    )
    return max(batched, propagation)


def window_bytes(
    frames: int,
    height: int,
    width: int,
    mid_channels: int,
    element_bytes: int,
    batch: int | None = None,
    architecture: str = "BasicVSRNet",
    scale: int = 4,
) -> int:
    """Estimated peak bytes of one window, safety margin included."""
    elements = height * width * peak_elements_per_pixel(frames, mid_channels, batch, architecture, scale)
    return int(elements * element_bytes * SAFETY_MARGIN)


def available_bytes(device: str) -> int:
    """What the device ("cpu", "cuda:N") has free now: CUDA's free memory, or the host's
    MemAvailable. Only CUDA's needs torch, imported then (`threads.import_torch`): a CPU plan
    loads no torch."""
    if device.startswith("cuda"):
        from .threads import import_torch

        free, _total = import_torch().cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def largest_tile(
    budget: int,
    frames: int,
    height: int,
    width: int,
    mid_channels: int,
    element_bytes: int,
    tile_overlap: int,
    batch: int | None = None,
    architecture: str = "BasicVSRNet",
    scale: int = 4,
) -> tuple[int, int] | None:
    """The largest tile (width, height) at most the frame's size, both at least MIN_TILE, with
    which a window of `frames` frames fits `budget` (each tile is computed with `tile_overlap`
    extra pixels on each side); None when even MIN_TILE does not fit. Tiles keep the frame's
    aspect ratio, so there are few and evenly shaped."""
    for scale in (1 / 2 ** (k / 2) for k in range(1, 40)):
        tile_w = max(MIN_TILE, min(width, math.ceil(width * scale / 8) * 8))
        tile_h = max(MIN_TILE, min(height, math.ceil(height * scale / 8) * 8))
        computed_w = min(width, tile_w + 2 * tile_overlap)
        computed_h = min(height, tile_h + 2 * tile_overlap)
        if (
            window_bytes(frames, computed_h, computed_w, mid_channels, element_bytes, batch, architecture, scale)
            <= budget
        ):
            return tile_w, tile_h
        if tile_w == MIN_TILE and tile_h == MIN_TILE:
            return None
    return None


@dataclass(frozen=True)
class WindowMemory:
    """The memory of one window of a clip: the model above for this frame size, network, element
    size and batch, with `overlap` context frames on each side and `tile_overlap` extra pixels
    around each tile. Pure arithmetic: the engine and the dry run size with it alike."""

    width: int
    height: int
    mid_channels: int
    element_bytes: int
    batch_frames: int
    overlap: int
    tile_overlap: int
    # Bytes of one input pixel's output sample on the host when a tiled window's outputs wait
    # there and that memory is the budget's (the CPU); 0 otherwise.
    held_sample_bytes: int = 0
    architecture: str = "BasicVSRNet"  # the network's class name (models/)
    scale: int = 4  # the network's output pixels per input pixel each way

    def computed_size(self, tile: tuple[int, int] | None) -> tuple[int, int]:
        """(w, h) of what one network run sees: the frame, or a tile with its overlap."""
        if tile is None:
            return self.width, self.height
        return min(self.width, tile[0] + 2 * self.tile_overlap), min(self.height, tile[1] + 2 * self.tile_overlap)

    def held_outputs_bytes(self, window: int, tile: tuple[int, int] | None) -> int:
        """With tiles the window's outputs (context frames too: they are stitched) wait on the host."""
        if tile is None:
            return 0
        return (window + 2 * self.overlap) * 3 * self.scale**2 * self.width * self.height * self.held_sample_bytes

    def network_bytes(self, frames: int, tile: tuple[int, int] | None) -> int:
        computed_w, computed_h = self.computed_size(tile)
        return window_bytes(
            frames,
            computed_h,
            computed_w,
            self.mid_channels,
            self.element_bytes,
            self.batch_frames,
            self.architecture,
            self.scale,
        )

    def needed_bytes(self, window: int, tile: tuple[int, int] | None) -> int:
        """The model's peak for one window, context frames and tile overlap included."""
        return self.network_bytes(window + 2 * self.overlap, tile) + self.held_outputs_bytes(window, tile)

    def largest_window(self, tile: tuple[int, int] | None, minimum: int, budget: int) -> int:
        """The longest window (at most MAX_AUTO_WINDOW, at least `minimum`) that fits `budget`."""
        window = minimum
        while window < MAX_AUTO_WINDOW and self.needed_bytes(window + 1, tile) <= budget:
            window += 1
        return window

    def choose(
        self, budget: int, max_seq_len: int, tile: tuple[int, int] | None, can_tile: bool
    ) -> tuple[int, tuple[int, int] | None]:
        """The window and tile to start with: `max_seq_len` (0 = automatic) and `tile` (None =
        automatic when `can_tile`, else off). Automatic sizing prefers untiled windows of at least
        MIN_AUTO_WINDOW frames, then tiles, then shorter windows (docs/MEMORY.md). ValueError
        "Upscale: ..." when nothing fits."""
        if tile is not None:
            return max_seq_len or self.largest_window(tile, 1, budget), tile
        window = max_seq_len or self.largest_window(None, MIN_AUTO_WINDOW if can_tile else 1, budget)
        if self.needed_bytes(window, None) <= budget:
            return window, None
        if not can_tile:
            if max_seq_len:  # the user's window: an out-of-memory error may still shrink it at run time
                return window, None
            need = self.network_bytes(1 + 2 * self.overlap, None)
            raise ValueError(
                f"Upscale: not even a window of 1 frame (+{self.overlap} context frames each side) "
                f"fits in {budget / 2**20:.0f} MiB untiled (about {need / 2**20:.0f} MiB); "
                "allow tiles (tile=0), lower overlap, or raise max_memory"
            )
        network_budget = budget - self.held_outputs_bytes(window, (self.width, self.height))
        chosen = largest_tile(
            network_budget,
            window + 2 * self.overlap,
            self.height,
            self.width,
            self.mid_channels,
            self.element_bytes,
            self.tile_overlap,
            self.batch_frames,
            self.architecture,
            self.scale,
        )
        if chosen is None:
            need = self.network_bytes(window + 2 * self.overlap, (MIN_TILE, MIN_TILE))
            raise ValueError(
                f"Upscale: a window of {window} frames (+{self.overlap} context frames each side) "
                f"does not fit in {budget / 2**20:.0f} MiB even with {MIN_TILE}x{MIN_TILE} tiles "
                f"(about {need / 2**20:.0f} MiB); use a smaller max_seq_len or overlap, "
                "or raise max_memory"
            )
        return window, chosen


# The networks `calibrate` measures, by class name.
CALIBRATED_ARCHITECTURES = ("RealBasicVSRNet", "IconVSRNet", "BasicVSRPlusPlusNet")


def measure_peak(
    frames: int,
    height: int,
    width: int,
    mid_channels: int = 64,
    batch: int | None = None,
    precision: str = "fp32",
    architecture: str = "RealBasicVSRNet",
    num_blocks: int | None = None,
) -> int:
    """Peak host bytes of one window of `architecture` (a class of CALIBRATED_ARCHITECTURES, its
    default sizes but `mid_channels` and, for IconVSR and BasicVSR++, `num_blocks` residual blocks
    per trunk when given; random weights) on the CPU in fp32 or bf16, in the CPU
    engine's layout (channels-last, SPyNet in fp32 and the default layout), measured in a fresh
    process: the rise of the peak resident set size (getrusage; reset after a small warm-up window
    where Linux allows, /proc/self/clear_refs) over the resident size before the window runs, with
    glibc's mmap threshold fixed so freed large buffers go back to the system at once."""
    import subprocess
    import sys

    if architecture not in CALIBRATED_ARCHITECTURES:
        raise ValueError(f"{architecture}: not one of {', '.join(CALIBRATED_ARCHITECTURES)}")
    sizes = f"mid_channels={mid_channels}" + ("" if num_blocks is None else f", num_blocks={num_blocks}")
    script = f"""
import resource, torch
from vsrealbasicvsr.engine.engine import channels_last_but_spynet
from vsrealbasicvsr.models import {architecture} as Network
torch.set_grad_enabled(False)
dtype = {{"fp32": torch.float32, "bf16": torch.bfloat16}}[{precision!r}]
net = channels_last_but_spynet(Network({sizes}).eval().to(dtype))
(net.basicvsr.spynet if hasattr(net, "basicvsr") else net.spynet).float()
lqs = torch.rand(1, {frames}, 3, {height}, {width}).to(dtype)
net(lqs[:, :2, :, :64, :64])  # warm up the allocator and kernels on a small window
page = resource.getpagesize()
before = int(open('/proc/self/statm').read().split()[1]) * page
resource_peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
try:  # Linux: reset the peak to the current size, so the warm-up's peak cannot hide the window's
    with open('/proc/self/clear_refs', 'w') as clear_refs:
        clear_refs.write('5')
except OSError:
    pass
assert resource_peak() < before + 64 * 2**20, 'warm-up peak too high to measure from'
for out in net.stream(lqs, batch_frames={batch}):
    del out
print(resource_peak() - before)
"""
    environment = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(1 << 20), OMP_NUM_THREADS="2")
    result = subprocess.run([sys.executable, "-c", script], env=environment, check=True, capture_output=True, text=True)
    return int(result.stdout.split()[-1])


def calibrate(
    mid_channels: int = 64,
    sizes=((64, 64), (96, 96)),
    lengths=(8, 32),
    precision: str = "fp32",
    architecture: str = "RealBasicVSRNet",
    num_blocks: int | None = None,
) -> None:
    """Print measured peaks next to `window_bytes` without its margin, for the engine's batch and,
    for RealBasicVSR in fp32, for all frames at once (MMEditing's):
    `python -m vsrealbasicvsr.engine.memory [bf16] [--architecture IconVSRNet] [--num-blocks N]`
    (about 20 minutes on 2 idle cores for RealBasicVSR in fp32)."""
    element_bytes = {"fp32": 4, "bf16": 2}[precision]
    # the CPU engine's batch, and MMEditing's where it was measured before
    batches = (1, None) if precision == "fp32" and architecture == "RealBasicVSRNet" else (1,)
    for height, width in sizes:
        for frames in lengths:
            for batch in batches:
                peak = measure_peak(frames, height, width, mid_channels, batch, precision, architecture, num_blocks)
                model = (
                    window_bytes(frames, height, width, mid_channels, element_bytes, batch, architecture)
                    / SAFETY_MARGIN
                )
                blocks = "" if num_blocks is None else f" ({num_blocks} blocks)"
                print(
                    f"{architecture}{blocks} {width}x{height} T={frames} batch={batch or frames} {precision}: measured "
                    f"{peak / 2**20:7.1f} MiB, model {model / 2**20:7.1f} MiB (ratio {peak / model:.2f})",
                    flush=True,
                )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Measure window peaks against the memory model.")
    parser.add_argument("precision", nargs="?", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--architecture", choices=CALIBRATED_ARCHITECTURES, default="RealBasicVSRNet")
    # a trunk's depth does not change the peak (its blocks run one after another), only the time
    parser.add_argument("--num-blocks", type=int, help="residual blocks per trunk of IconVSR and BasicVSR++")
    arguments = parser.parse_args()
    calibrate(precision=arguments.precision, architecture=arguments.architecture, num_blocks=arguments.num_blocks)
