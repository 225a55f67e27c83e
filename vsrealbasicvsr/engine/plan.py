"""What a run will do, worked out without weights or a network: the dry run's plan.

- `windows`: the windows the native filter cuts a clip into (the Python twin of rbvsr.c's
  `find_window`; tests/test_plan.py pins the two to each other).
- `network_shape`: the network's architecture, size and scale, from the registry or the
  checkpoint file's tensor shapes.
- `plan_clip`: the engine's first plan (`engine.Settings.first_plan`, as the engine makes it)
  and the windows of a clip.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from ..weights import registry
from . import engine as engine_module


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
    for start in range(0, num_frames, length):
        end = min(num_frames, start + length)
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


class NetworkShape(NamedTuple):
    """What a plan needs to know of the network without loading it."""

    architecture: str  # the network's class name
    mid_channels: int  # its feature channels
    scale: int  # output pixels per input pixel each way


def network_shape(model: str, checkpoint: str | os.PathLike | None) -> NetworkShape:
    """The network `Upscale` would load, without loading it: the registry's entry for a model
    name, else read from the checkpoint's tensor names and shapes (mapped, not read).
    ValueError "Upscale: ..." as the engine's for an unknown model or a foreign file."""
    from ..weights import checkpoints

    if checkpoint is None:
        try:
            info = registry.get(model)
        except ValueError as error:
            raise ValueError(f'Upscale: {error}, or pass checkpoint="path/to/file.pth"') from None
        return NetworkShape(info.architecture, info.mid_channels, info.scale)
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
class ClipPlan:
    """The engine's first plan for a clip and the windows it will compute."""

    settings: engine_module.Settings
    first: engine_module.FirstPlan
    windows: list[Window]
    network: NetworkShape

    @property
    def window(self) -> int:
        """Frames per window before scene cuts split them."""
        return self.first.window


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
    settings = engine_module.Settings.of(width, height, sample_type, bits_per_sample, **options)
    network = network_shape(model, checkpoint)
    first = settings.first_plan(network.mid_channels, network.architecture, network.scale)
    return ClipPlan(settings, first, windows(num_frames, first.window, settings.overlap, cuts), network)
