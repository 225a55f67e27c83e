"""A network's steps as torch modules, for backends that convert modules (OpenVINO's)."""

from __future__ import annotations

from torch import nn


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
