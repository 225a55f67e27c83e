"""The engine behind `core.rbvsr.Upscale`: windows of frames in, upscaled frames out.

The native filter creates one `Engine` per `Upscale` call (its `ValueError`s become the call's
`vs.Error`) and calls `Engine.run` once per window with the GIL held only around each step;
torch releases the GIL while it computes. The contract is in docs/DESIGN.md.

What the engine decides: the device and precision, the window length and tile size that fit in
memory (`memory.py`), how a window is cut into tiles, and what to do when the device runs out
of memory: free the cache, halve the tile (then the window), retry the same window, and keep the
smaller setting for the windows that follow.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from . import memory

DEFAULT_MAX_SEQ_LEN = 30
# Context frames on each side of a window (docs/WINDOWS_AND_TILES.md: with 4 frames of context
# the frames at window edges are within measurement noise of whole-clip output).
DEFAULT_OVERLAP = 4
# Low-resolution pixels that neighbouring tiles compute twice (docs/WINDOWS_AND_TILES.md).
DEFAULT_TILE_OVERLAP = 16
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TILE_AUTO, TILE_OFF = 0, -1
INJECT_OOM_ENV = "VSREALBASICVSR_INJECT_OOM"

_stats = {"windows": 0, "frames": 0, "attempts": 0, "oom_retries": 0}


def stats() -> dict:
    """Counters since the process started (or `reset_stats`): `windows` computed (each tile
    pass of a window counts once), output `frames`, engine `attempts`, `oom_retries`."""
    return dict(_stats)


def reset_stats() -> None:
    for key in _stats:
        _stats[key] = 0


def _inject_oom() -> None:
    """Fault injection for tests: the first K attempts of the process fail as out of memory."""
    limit = int(os.environ.get(INJECT_OOM_ENV, "0") or 0)
    if _stats["attempts"] <= limit:
        raise torch.OutOfMemoryError(f"injected out-of-memory ({INJECT_OOM_ENV}={limit})")


@dataclass(frozen=True)
class SampleFormat:
    """How the clip's samples map to [0, 1] floats and back."""

    dtype: np.dtype
    peak: int  # 0 for float formats

    @classmethod
    def of(cls, sample_type: int, bits_per_sample: int) -> "SampleFormat":
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
            f"{bits_per_sample} bits); convert to RGBS, e.g. core.resize.Bicubic(clip, format=vs.RGBS)")

    def to_float(self, plane: np.ndarray) -> np.ndarray:
        if self.peak:
            return plane.astype(np.float32) / np.float32(self.peak)
        return plane.astype(np.float32, copy=False)

    def from_float(self, frame: torch.Tensor) -> np.ndarray:
        """(3, H, W) float on any device -> C-contiguous host array of this format."""
        # Outputs are clamped to [0, 1] also for float clips: the network overshoots at edges,
        # and values outside the nominal range break the conversions that usually follow.
        frame = frame.clamp(0, 1)
        if self.peak:
            ints = torch.round(frame.float() * self.peak).to(torch.int32)
            return np.ascontiguousarray(ints.cpu().numpy().astype(self.dtype))
        target = torch.float16 if self.dtype == np.float16 else torch.float32
        return np.ascontiguousarray(frame.to(target).cpu().numpy())


@dataclass
class Plan:
    """The sizes the engine computes with; shrinks on out-of-memory."""

    window: int  # frames computed together, context not counted
    tile: tuple[int, int] | None  # (w, h) low-resolution pixels, None = untiled
    can_tile: bool  # False when the user said tile=-1


def _resolve_device(device: str) -> torch.device:
    if not isinstance(device, str):
        raise ValueError(f"Upscale: device must be a string, not {type(device).__name__}; use \"auto\", \"cpu\" or \"cuda\"")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"Upscale: unknown device {device!r}; use \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"Upscale: device {device!r} asked for, but this torch sees no CUDA GPU; "
                             "use device=\"cpu\" (or \"auto\"), or install a CUDA build of torch")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"Upscale: device {device!r} does not exist: {torch.cuda.device_count()} "
                             "CUDA device(s) found; use cuda:0 .. cuda:N-1")
    return resolved


def _resolve_precision(precision, device: torch.device, sample: SampleFormat) -> torch.dtype:
    if precision is None:
        # RGBH computes in fp16 on a GPU; CPUs have no fast fp16 convolutions, so fp32 there.
        return torch.float16 if sample.dtype == np.float16 and device.type == "cuda" else torch.float32
    if precision not in PRECISIONS:
        raise ValueError(f"Upscale: unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def _tile_argument(tile) -> tuple[int, int]:
    if isinstance(tile, int):
        tile = (tile, tile)
    try:
        tile_w, tile_h = (int(v) for v in tile)
    except (TypeError, ValueError):
        raise ValueError(f"Upscale: tile must be an int or [width, height], not {tile!r}; "
                         "e.g. tile=[256, 256], 0 = automatic, -1 = off") from None
    if (tile_w, tile_h) in ((TILE_AUTO, TILE_AUTO), (TILE_OFF, TILE_OFF)):
        return tile_w, tile_h
    if min(tile_w, tile_h) < memory.MIN_TILE:
        raise ValueError(f"Upscale: tile {[tile_w, tile_h]} is smaller than the minimum of {memory.MIN_TILE} px; "
                         f"use tiles of at least {memory.MIN_TILE}x{memory.MIN_TILE}, 0 (automatic) or -1 (off)")
    return tile_w, tile_h


def _load_network(model: str, checkpoint):
    from . import checkpoints, registry

    if checkpoint is not None:
        path = os.fspath(checkpoint)
    else:
        if model not in registry.MODELS:
            raise ValueError(f"Upscale: unknown model {model!r}; use one of {', '.join(registry.MODELS)}, "
                             "or pass checkpoint=\"path/to/file.pth\"")
        path = registry.resolve(model)
        if path is None:
            raise ValueError(f"Upscale: {registry.not_installed_message(model)}")
    try:
        return checkpoints.load_model(path)
    except checkpoints.CheckpointError as error:
        raise ValueError(f"Upscale: {error}") from None


def _compile(network: torch.nn.Module) -> torch.nn.Module:
    """torch.compile the convolution trunks, where the time goes; the Python loops stay eager."""
    if not torch._dynamo.is_dynamo_supported():
        raise ValueError("Upscale: compile=True is not supported by this torch and Python; use compile=False")
    for name, module in network.named_modules():
        if type(module).__name__ == "ResidualBlocksWithInputConv":
            module.main = torch.compile(module.main, dynamic=False)
    return network


class Engine:
    """One `Upscale` call's network and sizes. See docs/DESIGN.md for the contract.

    Args:
        width, height: the clip's frame size.
        sample_type, bits_per_sample: the clip's format (0 = integer, 1 = float).
        model: a registry name; checkpoint: a file that overrides it.
        max_seq_len: frames per window; 0 = the most that fit in memory.
        device: "auto", "cpu", "cuda" or "cuda:N".
        precision: None (per device and format), "fp32", "fp16" or "bf16".
        overlap: context frames fed on each side of a window (the filter passes them in).
        tile: (w, h) low-resolution tile; (0, 0) = automatic, (-1, -1) = off.
        tile_overlap: pixels each tile computes beyond its edges, discarded when stitching.
        offload: keep the backward-propagation features in host memory (CUDA).
        max_memory: bytes the engine may use on its device; None = what is free at creation.
        compile: torch.compile the network.
    """

    def __init__(self, width, height, sample_type, bits_per_sample, model="realbasicvsr", checkpoint=None,
                 max_seq_len=DEFAULT_MAX_SEQ_LEN, device="auto", precision=None, overlap=DEFAULT_OVERLAP,
                 tile=(TILE_AUTO, TILE_AUTO), tile_overlap=DEFAULT_TILE_OVERLAP, offload=False,
                 max_memory=None, compile=False):
        self.width, self.height = int(width), int(height)
        self.sample = SampleFormat.of(sample_type, bits_per_sample)
        if max_seq_len < 0:
            raise ValueError(f"Upscale: max_seq_len must be >= 0, not {max_seq_len}; 0 = automatic")
        if overlap < 0:
            raise ValueError(f"Upscale: overlap must be >= 0, not {overlap}; it counts context frames on each side")
        if tile_overlap < 0:
            raise ValueError(f"Upscale: tile_overlap must be >= 0, not {tile_overlap}; it counts pixels")
        if max_memory is not None and max_memory <= 0:
            raise ValueError(f"Upscale: max_memory must be a positive number of bytes, not {max_memory}; "
                             "leave it out to use what is free")
        tile_w, tile_h = _tile_argument(tile)
        self.device = _resolve_device(device)
        self.dtype = _resolve_precision(precision, self.device, self.sample)
        if self.device.type == "cuda" and "PYTORCH_CUDA_ALLOC_CONF" not in os.environ:
            # Fewer out-of-memory errors from fragmentation when window sizes change; it only
            # takes effect if set before CUDA's allocator starts, which is why it is set here.
            os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
        self.overlap = int(overlap)
        self.tile_overlap = int(tile_overlap)
        self.offload = bool(offload)

        network = _load_network(model, checkpoint)
        self.mid_channels = _mid_channels(network)
        network = network.to(self.device, self.dtype)
        if self.dtype != torch.float32:  # SPyNet's coarse-to-fine residues need float32
            _spynet(network).float()
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.network = _compile(network) if compile else network

        self.budget = int(max_memory) if max_memory is not None else memory.available_bytes(self.device)
        self.plan = self._initial_plan(int(max_seq_len), (tile_w, tile_h))
        self.max_seq_len = self.plan.window
        self._messages: list[str] = []
        self._warned_oom = False

    # -- sizing ----------------------------------------------------------------------------

    def _window_bytes(self, frames, height, width):
        element = torch.finfo(self.dtype).bits // 8
        return memory.window_bytes(frames, height, width, self.mid_channels, element)

    def _initial_plan(self, max_seq_len, tile) -> Plan:
        element = torch.finfo(self.dtype).bits // 8
        can_tile = tile != (TILE_OFF, TILE_OFF)
        if tile not in ((TILE_AUTO, TILE_AUTO), (TILE_OFF, TILE_OFF)):
            return Plan(max_seq_len or memory.MAX_AUTO_WINDOW, tile if tile != (self.width, self.height) else None, True)
        frames_with_context = lambda window: window + 2 * self.overlap  # noqa: E731
        if max_seq_len:
            window = max_seq_len
        else:
            fit = memory.largest_window(self.budget, self.height, self.width, self.mid_channels, element,
                                        limit=memory.MAX_AUTO_WINDOW + 2 * self.overlap) - 2 * self.overlap
            window = max(fit, memory.MIN_AUTO_WINDOW if can_tile else 1)
        if not can_tile or self._window_bytes(frames_with_context(window), self.height, self.width) <= self.budget:
            return Plan(window, None, can_tile)
        chosen = memory.largest_tile(self.budget, frames_with_context(window), self.height, self.width,
                                     self.mid_channels, element, self.tile_overlap)
        if chosen is None:
            need = self._window_bytes(frames_with_context(window), memory.MIN_TILE, memory.MIN_TILE)
            raise ValueError(f"Upscale: a window of {window} frames does not fit in {self.budget / 2**20:.0f} MiB "
                             f"even with {memory.MIN_TILE}x{memory.MIN_TILE} tiles (about {need / 2**20:.0f} MiB); "
                             "use a smaller max_seq_len, or raise max_memory")
        return Plan(window, chosen, can_tile)

    def _shrink(self, error: Exception) -> None:
        """After an out-of-memory error: halve the tile, then the window, or give up."""
        plan = self.plan
        before = self._describe_plan()
        current_tile = plan.tile or (self.width, self.height)
        half = ((current_tile[0] + 1) // 2, (current_tile[1] + 1) // 2)
        if plan.can_tile and min(half) >= memory.MIN_TILE:
            plan.tile = half
        elif plan.window > 1:
            plan.window //= 2
        else:
            raise RuntimeError(f"out of memory even with the smallest setting ({before}, "
                               f"budget {self.budget / 2**20:.0f} MiB): {error}; use a smaller clip "
                               "or another device") from error
        _stats["oom_retries"] += 1
        if not self._warned_oom:
            self._warned_oom = True
            self._messages.append(f"Upscale: out of memory with {before}; retrying with {self._describe_plan()} "
                                  "(later windows keep the smaller setting)")

    def _describe_plan(self) -> str:
        tile = f"tiles of {self.plan.tile[0]}x{self.plan.tile[1]}" if self.plan.tile else "no tiles"
        return f"windows of {self.plan.window} frames and {tile}"

    def take_messages(self) -> list[str]:
        """Warnings to log once through VapourSynth; each is returned once."""
        messages, self._messages = self._messages, []
        return messages

    # -- running -----------------------------------------------------------------------------

    def _to_tensor(self, frames) -> torch.Tensor:
        """(plane0, plane1, plane2, stride) memoryviews -> (1, T, 3, h, w) on the device."""
        itemsize = self.sample.dtype.itemsize
        host = np.empty((len(frames), 3, self.height, self.width), np.float32)
        for t, (*planes, stride) in enumerate(frames):
            for p, view in enumerate(planes):
                rows = np.frombuffer(view, self.sample.dtype).reshape(self.height, stride // itemsize)
                host[t, p] = self.sample.to_float(rows[:, : self.width])
                del rows  # the views are released by the filter after the window
        lqs = torch.from_numpy(host).unsqueeze(0)
        if self.device.type == "cuda":
            return lqs.pin_memory().to(self.device, self.dtype, non_blocking=True)
        return lqs.to(self.dtype)

    def run(self, frames, first, context_before, context_after):
        """Upscale one window. `frames` are the input frames in clip order, context included;
        `first` is the clip index of frames[0]. Yields, for the non-context frames in order,
        `(clip_index, array, window_first, window_size, tile_w, tile_h)`."""
        lqs = self._to_tensor(frames)
        core_first, core_end = context_before, len(frames) - context_after
        done = core_first  # local index of the next frame to hand out
        while done < core_end:
            # Sub-windows are aligned as a run with the current (possibly halved) window length
            # aligns them, and take their context from the frames the filter passed. After an
            # out-of-memory error, frames already handed out are computed again but not repeated.
            window = self.plan.window
            start = max(core_first, (first + done) // window * window - first)
            end = min(core_end, start + window - (first + start) % window)
            start_ctx, end_ctx = max(0, start - self.overlap), min(len(frames), end + self.overlap)
            try:
                for local, array, tile in self._attempt(lqs[:, start_ctx:end_ctx], start_ctx, done, end):
                    _stats["frames"] += 1
                    yield first + local, array, first + start, end_ctx - start_ctx, tile[0], tile[1]
                    done = local + 1
            except (torch.OutOfMemoryError, RuntimeError) as error:
                if not _is_out_of_memory(error):
                    raise
                self._free_cache()
                self._shrink(error)

    def _attempt(self, lqs, offset, core_first, core_end):
        """One try at frames core_first..core_end-1 (local indices; lqs starts at `offset`)."""
        _stats["attempts"] += 1
        _inject_oom()
        _stats["windows"] += 1
        with torch.inference_mode():
            if self.plan.tile is None:
                outputs = self._stream(lqs)
                tile = (0, 0)
            else:
                outputs = iter(self._tiled(lqs))
                tile = self.plan.tile
            for i, out in enumerate(outputs):
                local = offset + i
                if core_first <= local < core_end:
                    yield local, self.sample.from_float(out[0]), tile

    def _stream(self, lqs):
        feature_device = "cpu" if self.offload and self.device.type == "cuda" else None
        return self.network.stream(lqs, feature_device=feature_device)

    def _tiled(self, lqs) -> torch.Tensor:
        """The window tile by tile, each tile over all frames; returns (T, 1, 3, 4h, 4w) on the host.

        The recurrence runs in time, so a tile cannot be handed out before all its frames are
        done: with tiles the window's outputs wait on the host until the last tile."""
        _, t, _, h, w = lqs.shape
        tile_w, tile_h = self.plan.tile
        pad = self.tile_overlap
        result = torch.empty((t, 1, 3, 4 * h, 4 * w), dtype=torch.float32)
        for y0 in range(0, h, tile_h):
            for x0 in range(0, w, tile_w):
                y1, x1 = min(h, y0 + tile_h), min(w, x0 + tile_w)
                cy0, cx0 = max(0, y0 - pad), max(0, x0 - pad)
                cy1, cx1 = min(h, y1 + pad), min(w, x1 + pad)
                crop = lqs[:, :, :, cy0:cy1, cx0:cx1]
                for i, out in enumerate(self._stream(crop)):
                    inner = out[:, :, 4 * (y0 - cy0): 4 * (y1 - cy0), 4 * (x0 - cx0): 4 * (x1 - cx0)]
                    result[i, :, :, 4 * y0: 4 * y1, 4 * x0: 4 * x1] = inner.float().cpu()
        return result

    def _free_cache(self):
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _is_out_of_memory(error: Exception) -> bool:
    # CUDA raises torch.OutOfMemoryError; the CPU allocator a plain RuntimeError
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)


def _spynet(network):
    return network.basicvsr.spynet if hasattr(network, "basicvsr") else network.spynet


def _mid_channels(network) -> int:
    basicvsr = network.basicvsr if hasattr(network, "basicvsr") else network
    return basicvsr.mid_channels
