"""The engine behind `core.rbvsr.Upscale`: windows of frames in, upscaled frames out.

The native filter creates one `Engine` per `Upscale` call (its `ValueError`s become the call's
`vs.Error`) and calls `Engine.run` once per window from a VapourSynth thread, which waits while the
thread of the engine's device (`threads.TorchThread`) computes. The contract is in docs/DESIGN.md.

The planner (`plan.py`, no torch) decides the backend, the device and precision (as names),
the window length and tile size that fit in memory, and how they shrink after an out-of-memory
error. The engine does the rest on the device: it loads and places the network, runs its
steps on the backend (the recurrence stays in the models whatever the backend is), cuts a
window into tiles (`tiles.py`), and when the device runs out of memory frees the cache, shrinks
the plan, retries the same window and keeps the smaller setting for the windows that follow (an
out-of-memory error costs a retry once, not on every window; a new `Upscale` call starts from
its own plan again). fp16/bf16 outputs that overflowed are computed again in fp32.
"""

from __future__ import annotations

import copy
import gc
import os
from collections.abc import Iterator
from typing import Any

from . import threads

# Before torch loads OpenMP, which reads its wait policy only then (why: threads.py).
threads.prefer_passive_wait()

import numpy as np  # noqa: E402 (after the wait policy, above)
import torch  # noqa: E402

from ..options import UpscaleOptions  # noqa: E402
from . import progress, tiles  # noqa: E402
from .plan import SampleFormat, Settings, WindowSizes, sub_window  # noqa: E402

# The torch type of each of options.PRECISIONS.
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
INJECT_OOM_ENV = "VSREALBASICVSR_INJECT_OOM"


def _inject_oom(attempts: int) -> None:
    """Fault injection for tests: the first K attempts of the process (counted since the start
    or the last `progress.reset_stats`) fail as out of memory. The variable is read on every
    attempt so that a test can set and clear it around one window (docs/DESIGN.md, process-wide
    state)."""
    limit = int(os.environ.get(INJECT_OOM_ENV, "0") or 0)
    if attempts <= limit:
        raise torch.OutOfMemoryError(f"injected out-of-memory ({INJECT_OOM_ENV}={limit})")


def _from_float(sample: SampleFormat, frame: torch.Tensor) -> np.ndarray:
    """(3, H, W) float on any device -> C-contiguous host array of the clip's format."""
    # Outputs are clamped to [0, 1] also for float clips: the network overshoots at edges,
    # and values outside the nominal range break the conversions that usually follow.
    frame = frame.clamp(0, 1)
    if sample.peak:
        ints = torch.round(frame.float() * sample.peak).to(torch.int32)
        return np.ascontiguousarray(ints.cpu().numpy().astype(sample.dtype))
    target = torch.float16 if sample.dtype == np.float16 else torch.float32
    return np.ascontiguousarray(frame.to(target).cpu().numpy())


def _load_network(model: str, checkpoint, keyframe_stride: int | None = None):
    """The network of `model` or `checkpoint`, with the run-time choices its weights do not fix."""
    from ..weights import checkpoints, registry

    if checkpoint is not None:
        path = os.fspath(checkpoint)
    else:
        try:
            registry.get(model)
        except ValueError as error:
            raise ValueError(f'Upscale: {error}, or pass checkpoint="path/to/file.pth"') from None
        path = registry.resolve(model)
        if path is None:
            raise ValueError(f"Upscale: {registry.not_installed_message(model)}")
    try:
        network = checkpoints.load_model(path)
    except checkpoints.CheckpointError as error:
        # the file's own words start with its path: name the argument it came from
        raise ValueError(f"Upscale: {'checkpoint=' if checkpoint is not None else ''}{error}") from None
    if keyframe_stride is not None:
        if not hasattr(network, "keyframe_stride"):
            raise ValueError(
                f"Upscale: keyframe_stride is for IconVSR models, and {type(network).__name__} has no "
                "keyframes; leave keyframe_stride out"
            )
        network.keyframe_stride = keyframe_stride
    return network


def _check_deformable_precision(network: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """IconVSR and BasicVSR++ align with torchvision's deformable convolution, whose CPU kernel
    has no bf16 (torchvision 0.29: "deformable_im2col" not implemented for 'BFloat16')."""
    from ..models.deform_align import ModulatedDeformConv2d

    if device.type == "cpu" and dtype == torch.bfloat16:
        if any(isinstance(module, ModulatedDeformConv2d) for module in network.modules()):
            raise ValueError(
                f'Upscale: precision="bf16" on the CPU is not available for {type(network).__name__}: its '
                'deformable convolution (torchvision) has no bf16 CPU kernel; use precision="fp32"'
            )


def _check_dynamo() -> None:
    """compile=True where this torch and Python can compile (what the arguments allow is the
    planner's: `plan.check_compile`)."""
    if not torch._dynamo.is_dynamo_supported():
        raise ValueError("Upscale: compile=True is not supported by this torch and Python; use compile=False")


def _compile(network: torch.nn.Module) -> torch.nn.Module:
    """torch.compile the convolution trunks, where the time goes; the Python loops stay eager.
    Shapes are static per engine (tiles all have one size), so dynamic=False."""
    for module in network.modules():
        if type(module).__name__ == "ResidualBlocksWithInputConv":
            module.main = torch.compile(module.main, dynamic=False)
    return network


class Engine:
    """One `Upscale` call's network and sizes. See docs/DESIGN.md for the contract.

    Args:
        width, height: the clip's frame size.
        sample_type, bits_per_sample: the clip's format (0 = integer, 1 = float).
        num_frames: the clip's length, when known: a longer max_seq_len is clamped to it.
        **arguments: the `Upscale` arguments the user gave (`options.UpscaleOptions`: names,
            defaults, meaning; what needs no clip is checked there, the device, precision and
            compile by the planner, `plan.Settings.of`). Tiled windows hold their outputs on the
            host until the last tile.

    Attributes read by the filter: `max_seq_len` (resolved, >= 1), `overlap`, `scene_split`.
    `job_work`: the `progress.JobWork` its windows count into (its job's, or its own).

    Process-wide effects (docs/DESIGN.md): a CUDA engine sets PYTORCH_CUDA_ALLOC_CONF when the
    process has none and turns on `torch.backends.cudnn.benchmark`.
    """

    def __init__(
        self,
        width: int,
        height: int,
        sample_type: int,
        bits_per_sample: int,
        *,
        num_frames: int | None = None,
        **arguments: Any,
    ) -> None:
        settings = Settings.of(width, height, sample_type, bits_per_sample, num_frames, **arguments)
        opts = settings.options
        self.width, self.height, self.sample = settings.width, settings.height, settings.sample
        self.device, self.dtype = torch.device(settings.device), DTYPES[settings.precision]
        if opts.compile:
            _check_dynamo()
        if self.device.type == "cuda" and "PYTORCH_CUDA_ALLOC_CONF" not in os.environ:
            # Fewer out-of-memory errors from fragmentation when window sizes change; it only
            # takes effect if set before CUDA's allocator starts, which is why it is set here.
            os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
        self.overlap = settings.overlap
        self.tile_overlap = settings.tile_overlap
        self.scene_split = opts.scene_split
        self.offload = opts.offload

        self.torch_thread = threads.TorchThread.for_device(self.device)
        self._fp32_host_network = None  # kept by _prepare_network for fp16/bf16 engines
        self._fp32_network = None  # built from it when a window's output overflows
        self.network = self.torch_thread.call(self._prepare_network, opts)
        self.mid_channels = self.network.mid_channels
        self.scale = self.network.scale  # output pixels per input pixel each way (4, or 1)
        self.backend = settings.backend
        self.job_work = progress.work_of_new_engine()
        self._steps = progress.StepCounter(self.network.STEP_WORK)
        self.steps = self._steps.counted(self.torch_thread.call(self.backend.steps, self.network))
        # After loading: the budget is what is free once the weights are in place.
        start = settings.start_sizes(self.mid_channels, type(self.network).__name__, self.scale)
        self.window_memory, self.budget = start.window_memory, start.budget
        self.batch_frames = self.window_memory.batch_frames
        self.sizes = WindowSizes(start.window, start.tile, start.can_tile)
        self.max_seq_len = self.sizes.window
        self._messages: list[str] = []
        self._warned_oom = False
        self._warned_non_finite_input = False
        self._warned_non_finite_output = False

    def _prepare_network(self, opts: UpscaleOptions) -> torch.nn.Module:
        """The network loaded, on the device, in the engine's precision and layout."""
        network = _load_network(opts.model, opts.checkpoint, opts.keyframe_stride)
        _check_deformable_precision(network, self.device, self.dtype)
        if self.dtype != torch.float32:
            # The checkpoint's fp32 weights, for windows whose fp16/bf16 output is not finite
            # (recomputed in fp32): the cast weights cannot give them back, and the file may have
            # changed since. On the host, on the device only once a window needs them.
            self._fp32_host_network = copy.deepcopy(network)
        network = self._placed(network, self.dtype)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if opts.compile:
            network = _compile(network)
        return network

    def _placed(self, network, dtype) -> torch.nn.Module:
        """network on the engine's device in dtype and the layout its convolutions want."""
        network = network.to(self.device, dtype)
        if self.device.type == "cpu" or dtype != torch.float32:
            # Channels-last convolutions: faster on the CPU (oneDNN; docs/BENCHMARKS.md), with
            # outputs equal to the default layout's up to rounding; on CUDA the tensor cores of
            # fp16/bf16 want them (NVIDIA's guidance; fp32 on CUDA keeps the default).
            network = channels_last_but_spynet(network)
        if dtype != torch.float32:  # SPyNet's coarse-to-fine residues need float32
            _spynet(network).float()
        return network

    def _fp32_fallback_network(self) -> torch.nn.Module:
        """The network in fp32, placed as an fp32 engine places it, so that a recomputed window
        equals that engine's output; built the first time a window needs it, then kept."""
        if self._fp32_network is None:
            self._fp32_network = self._placed(self._fp32_host_network, torch.float32)
            self._fp32_host_network = None
        return self._fp32_network

    # -- sizing ----------------------------------------------------------------------------

    def estimated_bytes(self) -> int:
        """The memory model's peak for one window of the current plan (`memory.py`)."""
        return self.window_memory.needed_bytes(self.sizes.window, self.sizes.tile)

    def _shrink(self, failure: str) -> None:
        """After an out-of-memory error: the smaller tile or window (`WindowSizes.shrink`), or give up."""
        before = self.sizes.describe()
        if not self.sizes.shrink(self.width, self.height):
            raise RuntimeError(
                f"Upscale: out of memory even with the smallest setting ({before}, "
                f"{self.width}x{self.height} frames, +{self.overlap} context frames each side, "
                f"budget {self.budget / 2**20:.0f} MiB): {failure}; free memory on "
                f"{self.device}, use smaller overlap/tile_overlap, or another device"
            )
        progress.count("oom_retries")
        if not self._warned_oom:
            self._warned_oom = True
            self._messages.append(
                f"Upscale: out of memory with {before}; retrying with {self.sizes.describe()} "
                "(later windows keep the smaller setting)"
            )

    def take_messages(self) -> list[str]:
        """Warnings to log once through VapourSynth; each is returned once."""
        messages, self._messages = self._messages, []
        return messages

    # -- running -----------------------------------------------------------------------------

    def _to_tensor(self, frames, first, dtype) -> torch.Tensor:
        """(plane0, plane1, plane2, stride) memoryviews of clip frames first.. -> (1, T, 3, h, w)
        in dtype on the device, built once per window (pinned host memory and an asynchronous
        copy on CUDA). Non-finite samples of float clips are replaced (`_replace_non_finite`)."""
        itemsize = self.sample.dtype.itemsize
        host = torch.empty(
            (1, len(frames), 3, self.height, self.width), dtype=torch.float32, pin_memory=self.device.type == "cuda"
        )
        planes_out = host.numpy()[0]
        for t, (*planes, stride) in enumerate(frames):
            for p, view in enumerate(planes):
                rows = np.frombuffer(view, self.sample.dtype).reshape(self.height, stride // itemsize)
                planes_out[t, p] = self.sample.to_float(rows[:, : self.width])
                del rows  # holds a buffer export: the filter releases the views after the window
            if not self.sample.peak and not np.isfinite(planes_out[t]).all():  # integers are finite
                self._replace_non_finite(planes_out[t], first + t)
        if self.device.type == "cuda":
            return host.to(self.device, non_blocking=True).to(dtype)
        return host.to(dtype)

    def _replace_non_finite(self, frame: np.ndarray, index: int) -> None:
        """Replaces NaN and infinite samples of one (3, h, w) input frame in place, and says so once.

        The recurrence carries every sample into every later (and, backwards, earlier) frame of
        the window, so one NaN would make all of the window's outputs NaN. +inf is brighter than
        white and -inf darker than black: they become the ends of the nominal range, 1 and 0.
        NaN has no value to keep; 0 (black) is what a missing sample is elsewhere (np.nan_to_num,
        blank frames), where any grey would invent a brightness."""
        count = int(np.count_nonzero(~np.isfinite(frame)))
        np.nan_to_num(frame, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        if not self._warned_non_finite_input:
            self._warned_non_finite_input = True
            self._messages.append(
                f"Upscale: input frame {index} holds {count} NaN or infinite sample(s); replaced "
                "NaN and -inf by 0, +inf by 1 before upscaling (later frames alike, without "
                "another warning); check the filters before Upscale"
            )

    def run(
        self,
        frames: list[tuple[memoryview, memoryview, memoryview, int]],
        first: int,
        context_before: int,
        context_after: int,
    ) -> Iterator[tuple[int, np.ndarray, int, int, int, int]]:
        """Upscale one window. `frames` are the input frames in clip order, context included;
        `first` is the clip index of frames[0]. Yields, for the non-context frames in order,
        `(clip_index, array, window_first, window_size, tile_w, tile_h)`.

        Untiled, each frame is yielded as soon as the network's forward pass reaches it; with
        tiles, the window's outputs wait on the host until its last tile is done. The work runs
        on the engine's `TorchThread`, whichever thread asks."""
        return self.torch_thread.iterate(self._run(frames, first, context_before, context_after))

    def _run(self, frames, first, context_before, context_after):
        lqs = self._to_tensor(frames, first, self.dtype)
        core_first, core_end = context_before, len(frames) - context_after
        done = core_first  # local index of the next frame to hand out
        while done < core_end:
            # The current (possibly shortened) window's part of the filter's window. After an
            # out-of-memory error, frames already handed out are computed again but not repeated.
            part = sub_window(
                first + done,
                self.sizes.window,
                (first + core_first, first + core_end),
                (first, first + len(frames)),
                self.overlap,
            )
            start, end = part.first - first, part.end - first
            start_ctx, end_ctx = start - part.before, end + part.after
            failure, overflowed = None, False
            try:
                for local, array, tile in self._attempt(lqs[:, start_ctx:end_ctx], start_ctx, done, end):
                    progress.count("frames")
                    yield first + local, array, first + start, end_ctx - start_ctx, tile[0], tile[1]
                    done = local + 1
            except _NonFiniteOutput:
                overflowed = True
            except (torch.OutOfMemoryError, RuntimeError, MemoryError) as error:
                if not self.backend.is_out_of_memory(error):
                    raise
                failure = f"{type(error).__name__}: {error}"
            if failure is not None:
                # Out of the except block the error and its traceback, which hold the failed
                # attempt's tensors, are gone, so the cache can really be freed.
                self._free_cache()
                self._shrink(failure)
            if overflowed:
                # fp16/bf16 overflowed: the rest of this window in fp32, from the same input
                # (frames already handed out are not repeated); later windows try fp16/bf16 again.
                self._warn_non_finite_output(first + start, first + end - 1)
                lqs = self._to_tensor(frames, first, torch.float32)

    def _attempt(self, lqs, offset, core_first, core_end):
        """One try at frames core_first..core_end-1 (local indices; lqs starts at `offset`)."""
        _inject_oom(progress.count("attempts"))
        progress.count("windows")
        work = self._start_work(lqs, core_end - core_first)
        try:
            if self.sizes.tile is None:
                outputs, tile = (out[0] for out in self._stream(lqs)), (0, 0)
            else:
                outputs, tile = iter(self._tiled(lqs, self.sizes.tile)), self.sizes.tile
            for i, output in enumerate(outputs):
                local = offset + i
                if core_first <= local < core_end:  # context frames are computed, not converted
                    result = output if tile != (0, 0) else _from_float(self.sample, self._finite(output))
                    self.job_work.hand_out(work)
                    yield local, result, tile
        finally:
            self._end_work(work)

    # -- progress ----------------------------------------------------------------------------

    def _start_work(self, lqs, output_frames) -> progress.WindowWork:
        _, frames, _, h, w = lqs.shape
        tiles_count = 1
        if self.sizes.tile is not None:
            tiles_count = len(tiles.spans(h, self.sizes.tile[1], self.tile_overlap)) * len(
                tiles.spans(w, self.sizes.tile[0], self.tile_overlap)
            )
        work = self.job_work.start(output_frames, frames * self._steps.steps_per_frame * tiles_count)
        self._steps.work = work
        return work

    def _end_work(self, work: progress.WindowWork) -> None:
        self._steps.work = None
        self.job_work.end(work)

    def _stream(self, lqs):
        feature_device = "cpu" if self.offload and self.device.type == "cuda" else None
        network, steps = self.network, self.steps
        if lqs.dtype != self.dtype:  # an fp32 window of an fp16/bf16 engine: its output overflowed
            network = self._fp32_fallback_network()
            steps = self._steps.counted(network.steps())  # backends other than torch run fp32 only
        return network.stream(lqs, feature_device=feature_device, batch_frames=self.batch_frames, steps=steps)

    def _tiled(self, lqs, tile) -> np.ndarray:
        """The window tile by tile, each tile over all frames; returns (T, 3, s*h, s*w) host
        arrays in the clip's format.

        The recurrence runs in time, so a tile cannot be handed out before all its frames are
        done: with tiles the window's outputs wait on the host until the last tile. Each tile
        is computed with `tile_overlap` more pixels on each side (shifted inwards at the frame's
        borders, so every run has the same size) and only its own area is kept."""
        _, t, _, h, w = lqs.shape
        s = self.scale
        result = np.empty((t, 3, s * h, s * w), self.sample.dtype)
        for y0, y1, cy0, cy1 in tiles.spans(h, tile[1], self.tile_overlap):
            for x0, x1, cx0, cx1 in tiles.spans(w, tile[0], self.tile_overlap):
                crop = lqs[:, :, :, cy0:cy1, cx0:cx1]
                for i, out in enumerate(self._stream(crop)):
                    inner = out[0, :, s * (y0 - cy0) : s * (y1 - cy0), s * (x0 - cx0) : s * (x1 - cx0)]
                    result[i, :, s * y0 : s * y1, s * x0 : s * x1] = _from_float(self.sample, self._finite(inner))
        return result

    @staticmethod
    def _finite(output: torch.Tensor) -> torch.Tensor:
        """output, checked for NaN and infinity when it comes from an fp16/bf16 network: their
        range overflows where fp32's does not (the frame would be black or white), so such a
        window is computed again in fp32 (`_run`). fp32 outputs are what the network gives."""
        if output.dtype != torch.float32 and not torch.isfinite(output).all():
            raise _NonFiniteOutput
        return output

    def _warn_non_finite_output(self, window_first, window_last) -> None:
        if not self._warned_non_finite_output:
            self._warned_non_finite_output = True
            precision = next(name for name, dtype in DTYPES.items() if dtype == self.dtype)
            self._messages.append(
                f"Upscale: the {precision} output of window {window_first}..{window_last} holds NaN "
                f"or infinite values ({precision} overflowed); computing it again in fp32 (later "
                'windows alike, without another warning); precision="fp32" avoids the retries'
            )

    def _free_cache(self):
        gc.collect()  # the failed attempt's generators may sit in reference cycles
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class _NonFiniteOutput(ArithmeticError):
    """An fp16/bf16 window's output holds NaN or infinity."""


def _spynet(network):
    return network.basicvsr.spynet if hasattr(network, "basicvsr") else network.spynet


def channels_last_but_spynet(network: torch.nn.Module) -> torch.nn.Module:
    """network with channels-last convolutions, except SPyNet's, which keep the default layout.

    SPyNet's flows place the deformable and warped samples of every later step, so a change in
    its rounding travels furthest: in its default layout, the reference's, BasicVSR++ through the
    engine gives the bare network's output, where channels-last there moved it further from the
    golden output; and the default layout costs the network no measurable time there
    (tests/data/README.md, docs/BENCHMARKS.md)."""
    network = network.to(memory_format=torch.channels_last)
    _spynet(network).to(memory_format=torch.contiguous_format)
    return network
