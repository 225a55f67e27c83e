"""RealBasicVSR real-world video super-resolution (x4) as a VapourSynth filter.

In a `.vpy` script, either call the native filter, which VapourSynth autoloads::

    clip = core.rbvsr.Upscale(clip)

or this package's Python entry, which takes the same arguments::

    import vsrealbasicvsr
    clip = vsrealbasicvsr.upscale(clip)
"""

from __future__ import annotations

import importlib.util
import inspect
import os
from typing import Any

import vapoursynth as vs

from . import options as _options

__all__ = ["stats", "upscale"]

_PLUGIN_NAMESPACE = "rbvsr"


def upscale(clip: vs.VideoNode, **arguments: Any) -> vs.VideoNode:
    # The signature and the Args of the docstring are made from options.UpscaleOptions (below).
    if not isinstance(clip, vs.VideoNode):
        raise vs.Error(f"Upscale: clip must be a vs.VideoNode, not {type(clip).__name__}; pass a video clip")
    known = [option.name for option in _options.fields()]
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise vs.Error(f"Upscale: no argument named {', '.join(unknown)}; use {', '.join(known)}")
    # None means the default: such arguments are left out, so the filter leaves them out too.
    given = {
        name: os.fspath(value) if isinstance(value, os.PathLike) else value
        for name, value in arguments.items()
        if value is not None
    }
    try:  # checked here too: VapourSynth's own conversion of a wrong type is a bare ValueError
        _options.UpscaleOptions.of(**given)
    except ValueError as error:
        raise vs.Error(str(error)) from None
    return _plugin(vs.core).Upscale(clip, **given)


upscale.__signature__ = inspect.Signature(
    [
        inspect.Parameter("clip", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=vs.VideoNode),
        *_options.parameters(),
    ],
    return_annotation=vs.VideoNode,
)
upscale.__doc__ = f"""Upscales an RGB clip 4x with RealBasicVSR (`core.rbvsr.Upscale`).

    The clip is cut into windows of `max_seq_len` frames, aligned from frame 0; each window is
    computed once, on demand, when VapourSynth asks for one of its frames. The output of a frame
    depends only on the clip and these arguments, never on the order frames are requested in.
    Arguments are keywords; None, for any of them, means its default.

    Args:
        clip: RGB24, RGB30, RGB48, RGBH or RGBS clip of constant format and size. Convert YUV
            first, e.g. `core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s="709")`.
{_options.docstring_args(8)}

    Returns:
        The upscaled clip: the input's format, 4x width and height, same length and frame rate,
        the input's frame properties plus `RBVSRWindow` (first frame of the window that computed
        the frame), `RBVSRWindowSize` (frames computed together, context included) and
        `RBVSRTile` ([width, height] of the tiles, [0, 0] untiled).

    Raises:
        vs.Error: for a bad clip or argument, saying what to do about it.
    """


def stats() -> dict:
    """The engine's counters (`windows`: engine runs so far), for tests and benchmarks."""
    from vsrealbasicvsr.engine import progress

    return progress.stats()


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
