"""Backends: what runs the network's steps.

One network definition (`models/`), several executors. The networks' `stream` keeps the
recurrence (the time loops, warping features by the flows, batching, the cleaning loop's
stopping test) in Python and calls a `models.Steps` for the parts with no recurrence inside:
cleaning, SPyNet on frame pairs, a propagation step's trunk, reconstruction. A backend makes
those `Steps` from a loaded network. Windows, overlap, tiles, scene splits, sizing,
out-of-memory handling and frame properties stay in the engine, whatever the backend.

Adding a backend (TensorRT, say) is one module here, named as its `backend` option, defining
`BACKEND`, a `Backend` subclass; and its name in `options.BACKENDS`. `step_modules` gives each
step as a torch module for backends that convert modules.
"""

from __future__ import annotations

import importlib
from typing import ClassVar

# Not `import torch`: the submodule backends.torch takes that name in this package once imported.
from torch import OutOfMemoryError, nn
from torch import device as TorchDevice

from ..models import Steps


class Backend:
    """A backend on one device, checked (`on`). `torch_device` is where the recurrence's tensors
    live, which the engine sizes memory for and runs its torch thread on."""

    name: ClassVar[str]  # the `backend` option's value
    precisions: ClassVar[tuple[str, ...]]  # of options.PRECISIONS, those it computes in

    def __init__(self, torch_device: TorchDevice):
        self.torch_device = torch_device

    @classmethod
    def on(cls, device: str) -> Backend:
        """This backend on `device` (the `device` option, its form checked by options), or
        ValueError "Upscale: <what is wrong>; <what to do>" for a device it lacks."""
        raise NotImplementedError

    def steps(self, network: nn.Module) -> Steps:
        """`network`'s steps as this backend runs them (the network is loaded and placed on
        `torch_device`, in the engine's precision)."""
        raise NotImplementedError

    def is_out_of_memory(self, error: Exception) -> bool:
        """Whether `error`, raised while a window ran, says that memory ran out, so that the
        engine retries with smaller tiles or windows. Here: torch's errors, which every backend
        can raise (the recurrence's tensors are torch's); a backend adds its own."""
        # CUDA raises torch.OutOfMemoryError, the CPU allocator a RuntimeError naming it.
        return isinstance(error, (OutOfMemoryError, MemoryError)) or "can't allocate memory" in str(error)


def of(name: str, device: str) -> Backend:
    """Backend `name` (one of options.BACKENDS) on `device`; ValueError "Upscale: ..." when it
    cannot run there or is not installed."""
    return importlib.import_module(f".{name}", __name__).BACKEND.on(device)


class _MethodModule(nn.Module):
    """A network's method as a module of its own (BasicVSR's `reconstruct`), so that it can be
    traced and converted like the steps that are modules; the network's parameters are its."""

    def __init__(self, owner: nn.Module, method: str):
        super().__init__()
        self.owner, self.method = owner, method

    def forward(self, *inputs):
        return getattr(self.owner, self.method)(*inputs)


def step_modules(network: nn.Module) -> dict[str, nn.Module]:
    """Each of `network.steps()` (by name) as a torch module: the network's own
    modules, and its methods wrapped (`_MethodModule`)."""
    return {
        name: step if isinstance(step, nn.Module) else _MethodModule(step.__self__, step.__name__)
        for name, step in network.steps().items()
    }
