"""Backends: what runs the network's steps.

One network definition (`models/`), several executors. The networks' `stream` keeps the
recurrence (the time loops, warping features by the flows, batching, the cleaning loop's
stopping test) in Python and calls a `models.Steps` for the parts with no recurrence inside:
cleaning, SPyNet on frame pairs, a propagation step's trunk, reconstruction. A backend makes
those `Steps` from a loaded network. Windows, overlap, tiles, scene splits, sizing,
out-of-memory handling and frame properties stay in the engine, whatever the backend.

Adding a backend (TensorRT, say) is one module here, named as its `backend` option, defining
`BACKEND`, a `Backend` subclass; and its name in `options.BACKENDS`. `modules.step_modules`
gives each step as a torch module for backends that convert modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from torch import nn

    from ..models import Steps


class Backend:
    """A backend on one device, checked (`on`). `device` names where the recurrence's tensors
    live ("cpu", "cuda:N"), which the engine sizes memory for and runs its torch thread on.

    Import-light: choosing a backend and its device (`of`) loads torch only where the answer
    needs it (a CUDA device, "auto"), so that planning for the CPU loads no torch."""

    name: ClassVar[str]  # the `backend` option's value
    precisions: ClassVar[tuple[str, ...]]  # of options.PRECISIONS, those it computes in

    def __init__(self, device: str):
        self.device = device

    @classmethod
    def on(cls, device: str) -> Backend:
        """This backend on `device` (the `device` option, its form checked by options), or
        ValueError "Upscale: <what is wrong>; <what to do>" for a device it lacks."""
        raise NotImplementedError

    def steps(self, network: nn.Module) -> Steps:
        """`network`'s steps as this backend runs them (the network is loaded and placed on
        `device`, in the engine's precision)."""
        raise NotImplementedError

    def is_out_of_memory(self, error: Exception) -> bool:
        """Whether `error`, raised while a window ran, says that memory ran out, so that the
        engine retries with smaller tiles or windows. Here: torch's errors, which every backend
        can raise (the recurrence's tensors are torch's); a backend adds its own."""
        # Not `import torch`: the submodule backends.torch takes that name in this package.
        from torch import OutOfMemoryError

        # CUDA raises torch.OutOfMemoryError, the CPU allocator a RuntimeError naming it.
        return isinstance(error, (OutOfMemoryError, MemoryError)) or "can't allocate memory" in str(error)


def of(name: str, device: str) -> Backend:
    """Backend `name` (one of options.BACKENDS) on `device`; ValueError "Upscale: ..." when it
    cannot run there or is not installed."""
    return importlib.import_module(f".{name}", __name__).BACKEND.on(device)
