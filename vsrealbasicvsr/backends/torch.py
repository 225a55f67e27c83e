"""backend="torch": the network's own modules run by PyTorch, on the CPU or a CUDA GPU.

torch itself is imported where a device's answer needs it ("auto", "cuda"), through
`engine.threads.import_torch`: a CPU plan loads no torch (backends/__init__.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.threads import import_torch
from ..options import PRECISIONS
from . import Backend

if TYPE_CHECKING:
    from torch import nn

    from ..models import Steps


def resolve_device(device: str) -> str:
    """The torch device name ("cpu", "cuda:N") of a device option (its form is checked by
    options.UpscaleOptions). "cpu" needs no torch; "auto" and CUDA devices ask torch."""
    if device.startswith("gpu"):
        raise ValueError(
            f'Upscale: device {device!r} is an Intel GPU, which backend="torch" does not run on; '
            'use backend="openvino" with it, or device="cuda" for an NVIDIA GPU'
        )
    if device == "cpu":
        return device
    torch = import_torch()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise ValueError(f'Upscale: unknown device {device!r}; use "auto", "cpu", "cuda" or "cuda:N"')
    if resolved.type == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        raise ValueError(
            f"Upscale: device {device!r} asked for, but this torch sees no CUDA GPU; "
            'use device="cpu" (or "auto"), or install a CUDA build of torch'
        )
    if resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(
            f"Upscale: device {device!r} does not exist: {torch.cuda.device_count()} "
            "CUDA device(s) found; use cuda:0 .. cuda:N-1"
        )
    # "cuda" is the current GPU of this thread, not of the engine's
    index = torch.cuda.current_device() if resolved.index is None else resolved.index
    return f"cuda:{index}"


class TorchBackend(Backend):
    name = "torch"
    precisions = PRECISIONS

    @classmethod
    def on(cls, device: str) -> TorchBackend:
        return cls(resolve_device(device))

    def steps(self, network: nn.Module) -> Steps:
        return network.steps()


BACKEND = TorchBackend
