"""RealBasicVSR real-world video super-resolution (x4) as a VapourSynth filter.

In a `.vpy` script, either call the native filter, which VapourSynth autoloads::

    clip = core.rbvsr.Upscale(clip)

or this package's Python entry, which takes the same arguments::

    import vsrealbasicvsr
    clip = vsrealbasicvsr.upscale(clip)
"""
from __future__ import annotations

import importlib.util
import os

import vapoursynth as vs

__all__ = ["upscale", "stats"]

_PLUGIN_NAMESPACE = "rbvsr"


def upscale(
    clip: vs.VideoNode,
    model: str = "realbasicvsr",
    checkpoint: str | os.PathLike | None = None,
    max_seq_len: int = 30,
    device: str = "auto",
    precision: str | None = None,
    scene_split: bool = True,
    overlap: int | None = None,
    tile: int | tuple[int, int] | list[int] = 0,
    tile_overlap: int | None = None,
    offload: bool = False,
    max_memory: int | None = None,
    compile: bool = False,
) -> vs.VideoNode:
    """Upscales an RGB clip 4x with RealBasicVSR (`core.rbvsr.Upscale`).

    The clip is cut into windows of `max_seq_len` frames, aligned from frame 0; each window is
    computed once, on demand, when VapourSynth asks for one of its frames. The output of a frame
    depends only on the clip and these arguments, never on the order frames are requested in.

    Args:
        clip: RGB24, RGB30, RGB48, RGBH or RGBS clip of constant format and size. Convert YUV
            first, e.g. `core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s="709")`.
        model: Registered model name (default "realbasicvsr").
        checkpoint: Path of a checkpoint file to load instead of the model's installed weights.
        max_seq_len: Frames computed together in one window (default 30); 0 = automatic, the
            engine picks what fits in memory. Longer windows give the recurrence more context
            and take more memory.
        device: "auto" (default: a GPU when there is one, else the CPU), "cpu", "cuda",
            "cuda:1", ...
        precision: "fp32", "fp16" or "bf16"; None (default) picks per device.
        scene_split: Split windows at scene cuts (frames whose `_SceneChangePrev` is 1, e.g. from
            `core.scxvid.Scxvid`), so frames of different scenes never see each other
            (default True).
        overlap: Context frames computed on each side of a window and then dropped, so frames
            at window edges see their neighbours; they never cross a scene cut. None (default):
            the engine's default.
        tile: Spatial tile size: one int or [width, height]; 0 (default) = automatic (tiles only
            when a window, its context frames included, does not fit in memory), -1 = never tile.
        tile_overlap: Pixels that neighbouring tiles share; None (default): the engine's default.
        offload: Keep the backward-propagation features in host memory instead of on the GPU
            (default False): slower, uses less GPU memory.
        max_memory: Memory budget of the engine in bytes; None (default): what is free.
        compile: Compile the model with `torch.compile` (default False): slow start, faster
            frames.

    Returns:
        The upscaled clip: the input's format, 4x width and height, same length and frame rate,
        the input's frame properties plus `RBVSRWindow` (first frame of the window that computed
        the frame), `RBVSRWindowSize` (frames computed together, context included) and
        `RBVSRTile` ([width, height] of the tiles, [0, 0] untiled).

    Raises:
        vs.Error: for a bad clip or argument, saying what to do about it.
    """
    if not isinstance(clip, vs.VideoNode):
        raise vs.Error(f"Upscale: clip must be a vs.VideoNode, not {type(clip).__name__}; pass a video clip")
    arguments = dict(
        model=model,
        checkpoint=os.fspath(checkpoint) if checkpoint is not None else None,
        max_seq_len=max_seq_len,
        device=device,
        precision=precision,
        scene_split=scene_split,
        overlap=overlap,
        tile=tile,
        tile_overlap=tile_overlap,
        offload=offload,
        max_memory=max_memory,
        compile=compile,
    )
    # None means "the engine's default": leave such arguments out so the filter does too.
    arguments = {key: value for key, value in arguments.items() if value is not None}
    return _plugin(vs.core).Upscale(clip, **arguments)


def stats() -> dict:
    """The engine's counters (`windows`: engine runs so far), for tests and benchmarks."""
    from vsrealbasicvsr import engine

    return engine.stats()


def _plugin(core: vs.Core):
    """The rbvsr namespace of core, loading the native filter when it was not autoloaded."""
    if not hasattr(core, _PLUGIN_NAMESPACE):
        path = _plugin_path()
        if path is None:
            raise vs.Error(
                "Upscale: the native filter (vapoursynth/plugins/rbvsr) is not built; "
                "install the package with `pip install .` from the source tree"
            )
        core.std.LoadPlugin(path)
    return getattr(core, _PLUGIN_NAMESPACE)


def _plugin_path() -> str | None:
    try:
        spec = importlib.util.find_spec(f"vapoursynth.plugins.{_PLUGIN_NAMESPACE}")
    except ImportError:
        return None
    return spec.origin if spec is not None else None
