"""What a run will do, worked out without weights, a network or torch: the engine's plan and the
dry run's alike.

- `Settings`: an `Upscale` call's arguments checked and resolved (device and precision as names,
  "cpu"/"cuda:0" and "fp32"/"fp16"/"bf16"; the engine turns them into torch objects), and the
  window and tile an engine starts with (`Settings.start_sizes`, `StartSizes`).
- `WindowSizes`: the window and tile an engine computes with, and how an out-of-memory error shrinks
  them (`WindowSizes.shrink`).
- `windows`, `aligned_window`, `sub_window`: the windows the native filter cuts a clip into (the
  Python twin of rbvsr.c's `find_window`; tests/test_plan.py pins the two to each other), and the
  shorter windows an engine computes within one of them after an out-of-memory error. The one
  home of window alignment in Python.
- `network_shape`: the network's architecture, size and scale, from the registry or the
  checkpoint file's tensor shapes.
- `plan_clip`: a clip's plan (`ClipPlan`): the sizes an engine starts with and the windows.

Import-light: no torch and no engine. A CPU plan of a registered model loads no torch; asking
for a CUDA device ("auto", "cuda") or reading a checkpoint file's shapes imports it there
(`threads.import_torch`, after the OpenMP wait policy is set).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .. import backends
from ..options import TILE_AUTO, TILE_OFF, UpscaleOptions
from ..weights import registry
from . import memory

# Bytes per element of each of options.PRECISIONS.
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
# No frame is wider or taller than a C int (VapourSynth's frame sizes, the filter's frame properties).
MAX_TILE = 2**31 - 1


class Window(NamedTuple):
    """One window of the filter: frames [first, end), computed with context frames around."""

    first: int
    end: int
    before: int  # context frames computed before `first`
    after: int  # context frames computed after `end - 1`

    @property
    def computed(self) -> int:
        """Frames the engine computes for it, context included (the frames' `RBVSRWindowSize`)."""
        return self.before + self.end - self.first + self.after


def windows(num_frames: int, length: int, overlap: int, cuts: Iterable[int] = ()) -> list[Window]:
    """The windows of a clip of `num_frames` frames, in order, as the native filter computes them.

    Windows of `length` frames are aligned from frame 0 (the last one may be shorter) and split
    at each cut, a frame whose `_SceneChangePrev` is 1 (pass none when scene_split is off): a cut
    starts a new window. Each window takes up to `overlap` context frames on each side, within
    the clip and its scene."""
    cut = set(cuts)
    result = []
    for frame in range(0, num_frames, length):
        start, end = aligned_window(frame, length)
        end = min(num_frames, end)
        bounds = [start, *(k for k in range(start + 1, end) if k in cut), end]
        for first, last in itertools.pairwise(bounds):
            before = 0
            while before < overlap and first - before - 1 >= 0 and first - before not in cut:
                before += 1
            after = 0
            while after < overlap and last + after < num_frames and last + after not in cut:
                after += 1
            result.append(Window(first, last, before, after))
    return result


def aligned_window(frame: int, length: int) -> tuple[int, int]:
    """[first, end) of the window of `length` frames, aligned from frame 0, that holds `frame`
    (its end not clamped to the clip)."""
    first = frame // length * length
    return first, first + length


def sub_window(frame: int, length: int, window: tuple[int, int], passed: tuple[int, int], overlap: int) -> Window:
    """What an engine computes next within one of the filter's windows, `window` = [first, end),
    once an out-of-memory error shortened its windows to `length` frames: the window of `length`
    frames holding `frame` (the next frame to hand out), aligned as `windows` aligns a run with
    that length, within `window`; its context frames, up to `overlap` each side, from the
    frames the filter passed, `passed` = [first, end). Clip indices. `WindowSizes.shrink` keeps the
    shorter windows nested in the longer ones, so the retried frames equal those of a run
    started with the shorter window."""
    first, end = aligned_window(frame, length)
    first, end = max(window[0], first), min(window[1], end)
    return Window(first, end, min(overlap, first - passed[0]), min(overlap, passed[1] - end))


class NetworkShape(NamedTuple):
    """What a plan needs to know of the network without loading it."""

    architecture: str  # the network's class name
    mid_channels: int  # its feature channels
    scale: int  # output pixels per input pixel each way


def network_shape(model: str, checkpoint: str | os.PathLike | None) -> NetworkShape:
    """The network `Upscale` would load, without loading it: the registry's entry for a model
    name (no torch), else read from the checkpoint's tensor names and shapes (mapped, not read;
    torch reads the file).
    ValueError "Upscale: ..." as the engine's for an unknown model or a foreign file."""
    if checkpoint is None:
        try:
            info = registry.get(model)
        except ValueError as error:
            raise ValueError(f'Upscale: {error}, or pass checkpoint="path/to/file.pth"') from None
        return NetworkShape(info.architecture, info.mid_channels, info.scale)
    from .threads import prefer_passive_wait

    prefer_passive_wait()  # checkpoints imports torch (threads.py says why first)
    from ..weights import checkpoints

    path = os.fspath(checkpoint)
    try:
        state = checkpoints.load_state_dict(path, mmap=True)
        network_class, config = checkpoints.infer_config(state, path)
    except checkpoints.CheckpointError as error:
        raise ValueError(f"Upscale: checkpoint={error}") from None
    with checkpoints.torch.device("meta"):
        network = network_class(**config)
    return NetworkShape(network_class.__name__, network.mid_channels, network.scale)


@dataclass(frozen=True)
class SampleFormat:
    """How the clip's samples map to [0, 1] floats and back (the engine converts its outputs)."""

    dtype: np.dtype
    peak: int  # 0 for float formats

    @classmethod
    def of(cls, sample_type: int, bits_per_sample: int) -> SampleFormat:
        if sample_type == 0 and bits_per_sample == 8:
            return cls(np.dtype(np.uint8), 255)
        if sample_type == 0 and 9 <= bits_per_sample <= 16:
            return cls(np.dtype(np.uint16), (1 << bits_per_sample) - 1)
        if sample_type == 1 and bits_per_sample == 16:
            return cls(np.dtype(np.float16), 0)
        if sample_type == 1 and bits_per_sample == 32:
            return cls(np.dtype(np.float32), 0)
        raise ValueError(
            f"Upscale: unsupported sample format ({'float' if sample_type else 'integer'}, "
            f"{bits_per_sample} bits); convert to RGBS, e.g. core.resize.Bicubic(clip, format=vs.RGBS)"
        )

    def to_float(self, plane: np.ndarray) -> np.ndarray:
        if self.peak:
            return plane.astype(np.float32) / np.float32(self.peak)
        return plane.astype(np.float32, copy=False)


def resolve_precision(precision: str | None, device: str, sample: SampleFormat) -> str:
    """The precision ("fp32", "fp16", "bf16") an engine on `device` ("cpu", "cuda:N") computes
    a clip of `sample` in, for the `precision` option (None: automatic)."""
    on_cuda = device.startswith("cuda")
    if precision is None:
        # RGBH computes in fp16 on a GPU; CPUs have no fast fp16 convolutions, so fp32 there.
        return "fp16" if sample.dtype == np.float16 and on_cuda else "fp32"
    if precision == "fp16" and not on_cuda:
        # torch's CPU fp16 convolutions are slow, bf16 is fast on CPUs with native bf16 and slow
        # on others, so only fp16 is refused (figures: docs/BENCHMARKS.md).
        raise ValueError(
            'Upscale: precision="fp16" is for CUDA devices, the engine runs on the CPU; '
            'use precision="fp32" (or "bf16") on the CPU, or device="cuda"'
        )
    return precision


def frame_tile(tile: tuple[int, int], width: int, height: int) -> tuple[int, int]:
    """The checked tile option (options.UpscaleOptions) for frames of width x height: sizes
    beyond the frame are clamped to it (one tile spans it), sizes beyond any frame refused."""
    tile_w, tile_h = tile
    if (tile_w, tile_h) in ((TILE_AUTO, TILE_AUTO), (TILE_OFF, TILE_OFF)):
        return tile_w, tile_h
    if max(tile_w, tile_h) > MAX_TILE:
        raise ValueError(
            f"Upscale: tile {[tile_w, tile_h]} is out of range (at most {MAX_TILE} px); "
            f"use at most the frame's size ({width}x{height}), 0 (automatic) or -1 (off)"
        )
    return min(tile_w, width), min(tile_h, height)


def check_compile(backend: backends.Backend) -> None:
    """compile=True only with the torch backend on CUDA: on the CPU inductor needs a C++
    toolchain at run time and the first window would stall for minutes inside a frame request
    (not tried further on CPUs), so it is refused at call time instead. Whether this torch and
    Python can compile at all, the engine asks torch."""
    if backend.name != "torch":
        raise ValueError(
            f'Upscale: compile=True is torch.compile, for backend="torch"; '
            f'backend="{backend.name}" compiles its steps anyway: use compile=False'
        )
    if not backend.device.startswith("cuda"):
        raise ValueError("Upscale: compile=True needs a CUDA device, the engine runs on the CPU; use compile=False")


@dataclass
class WindowSizes:
    """The window and tile an engine computes with now; they shrink on out-of-memory (`shrink`)."""

    window: int  # frames computed together, context not counted
    tile: tuple[int, int] | None  # (w, h) low-resolution pixels, None = untiled
    can_tile: bool  # False when the user said tile=-1

    def shrink(self, width: int, height: int) -> bool:
        """After an out-of-memory error on frames of width x height: halve the tile, then the
        window; False when both are as small as they go.

        A tile is halved in each dimension down to MIN_TILE. A window of W frames becomes its
        largest divisor <= W/2 (W/2 when W is even), so the shorter windows, aligned from frame 0
        as the filter aligns them (`sub_window`), nest inside the longer ones: the retried
        frames equal those of a run started with the shorter window."""
        current = self.tile or (width, height)
        half = tuple(min(size, max(memory.MIN_TILE, (size + 1) // 2)) for size in current)
        if self.can_tile and half != current and half != (width, height):
            self.tile = half
        elif self.window > 1:
            self.window = max(d for d in range(1, self.window // 2 + 1) if self.window % d == 0)
        else:
            return False
        return True

    def describe(self) -> str:
        tile = f"tiles of {self.tile[0]}x{self.tile[1]}" if self.tile else "no tiles"
        return f"windows of {self.window} frames and {tile}"


@dataclass(frozen=True)
class StartSizes:
    """The window and tile an engine starts with, the memory model that chose them, the budget."""

    window_memory: memory.WindowMemory
    budget: int
    window: int  # frames computed together, context not counted
    tile: tuple[int, int] | None  # (w, h) low-resolution pixels, None = untiled
    can_tile: bool

    def estimated_bytes(self) -> int:
        return self.window_memory.needed_bytes(self.window, self.tile)


@dataclass(frozen=True)
class Settings:
    """An `Upscale` call's arguments checked and resolved: all the engine needs but its weights.

    `Settings.of` raises the call's `ValueError`s; `start_sizes` sizes windows and tiles for a
    network of `mid_channels` channels. The engine and the dry run both plan this way, so the
    dry run's plan is the run's."""

    options: UpscaleOptions  # the arguments as given, checked; the fields below are resolved
    backend: backends.Backend
    width: int
    height: int
    sample: SampleFormat
    device: str  # "cpu" or "cuda:N": where the recurrence's tensors live
    precision: str  # "fp32", "fp16" or "bf16"
    max_seq_len: int  # 0 = automatic
    overlap: int
    tile: tuple[int, int]  # as asked: (0, 0) automatic, (-1, -1) off, or a size
    tile_overlap: int
    max_memory: int | None

    @classmethod
    def of(
        cls,
        width: int,
        height: int,
        sample_type: int,
        bits_per_sample: int,
        num_frames: int | None = None,
        **arguments: Any,
    ) -> Settings:
        """The arguments as `Engine` takes them (see there), checked: what needs no clip by
        `UpscaleOptions.of`, the backend and device by the backend, precision and compile here."""
        opts = UpscaleOptions.of(**arguments)
        sample = SampleFormat.of(sample_type, bits_per_sample)
        tile = frame_tile(opts.tile, int(width), int(height))
        backend = backends.of(opts.backend, opts.device)
        precision = resolve_precision(opts.precision, backend.device, sample)
        if precision not in backend.precisions:
            raise ValueError(
                f'Upscale: backend="{backend.name}" computes in {", ".join(backend.precisions)} only; '
                f'use precision="{backend.precisions[0]}" (or leave it out), or backend="torch"'
            )
        if opts.compile:
            check_compile(backend)
        # A window longer than the clip is the whole clip; memory is then sized for the clip.
        max_seq_len = opts.max_seq_len if num_frames is None else min(opts.max_seq_len, int(num_frames))
        return cls(
            opts,
            backend,
            int(width),
            int(height),
            sample,
            backend.device,
            precision,
            max_seq_len,
            opts.overlap,
            tile,
            opts.tile_overlap,
            opts.max_memory,
        )

    def window_memory(
        self, mid_channels: int, architecture: str = "BasicVSRNet", scale: int = 4
    ) -> memory.WindowMemory:
        # Cleaning and SPyNet need no recurrence, so they can run on a few frames at a time
        # instead of the whole window (MMEditing's way, whose cleaning dominates the peak of long
        # windows). On CUDA, batches as large as fit under one frame's reconstruction keep the
        # GPU busy on small frames; CPU convolutions gain nothing from batching (docs/BENCHMARKS.md)
        # and each extra frame costs memory, so one frame at a time there.
        on_cpu = self.device == "cpu"
        return memory.WindowMemory(
            self.width,
            self.height,
            mid_channels,
            ELEMENT_BYTES[self.precision],
            1 if on_cpu else memory.batch_frames(mid_channels),
            self.overlap,
            self.tile_overlap,
            # tiled windows' outputs wait on the host, which is the CPU engine's budget too
            self.sample.dtype.itemsize if on_cpu else 0,
            architecture,
            scale,
        )

    def start_sizes(self, mid_channels: int, architecture: str = "BasicVSRNet", scale: int = 4) -> StartSizes:
        """Window and tile for a network of `mid_channels` channels (of `architecture`, the
        class's name, at `scale`): `max_memory`, or what the device has free now."""
        window_memory = self.window_memory(mid_channels, architecture, scale)
        budget = self.max_memory if self.max_memory is not None else memory.available_bytes(self.device)
        can_tile = self.tile != (TILE_OFF, TILE_OFF)
        fixed_tile = None if self.tile in ((TILE_AUTO, TILE_AUTO), (TILE_OFF, TILE_OFF)) else self.tile
        window, tile = window_memory.choose(budget, self.max_seq_len, fixed_tile, can_tile)
        return StartSizes(window_memory, budget, window, tile, can_tile)


@dataclass(frozen=True)
class ClipPlan:
    """A clip's plan: the settings, the sizes the engine starts with, the windows it will compute."""

    settings: Settings
    sizes: StartSizes
    windows: list[Window]
    network: NetworkShape

    @property
    def window(self) -> int:
        """Frames per window before scene cuts split them."""
        return self.sizes.window


def plan_clip(
    width: int,
    height: int,
    sample_type: int,
    bits_per_sample: int,
    num_frames: int,
    cuts: Iterable[int] = (),
    model: str = registry.DEFAULT_MODEL,
    checkpoint=None,
    **options,
) -> ClipPlan:
    """The plan of `Upscale` on a clip of this size, format and length with these cuts and the
    engine's arguments (`options`: max_seq_len, device, precision, overlap, tile, tile_overlap,
    max_memory, compile). The budget is what is free now; the engine measures it again once its
    weights are loaded, so an automatic window could come out shorter there: `upscale` passes
    the planned window to the filter explicitly."""
    settings = Settings.of(width, height, sample_type, bits_per_sample, **options)
    network = network_shape(model, checkpoint)
    sizes = settings.start_sizes(network.mid_channels, network.architecture, network.scale)
    return ClipPlan(settings, sizes, windows(num_frames, sizes.window, settings.overlap, cuts), network)
