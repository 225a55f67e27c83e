"""backend="torch": the network's own modules run by PyTorch, on the CPU or a CUDA GPU."""

from __future__ import annotations

import torch

from ..models import Steps
from ..options import PRECISIONS
from . import Backend


def resolve_device(device: str) -> torch.device:
    """The torch device of a device option (its form is checked by options.UpscaleOptions)."""
    if device.startswith("gpu"):
        raise ValueError(
            f'Upscale: device {device!r} is an Intel GPU, which backend="torch" does not run on; '
            'use backend="openvino" with it, or device="cuda" for an NVIDIA GPU'
        )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise ValueError(f'Upscale: unknown device {device!r}; use "auto", "cpu", "cuda" or "cuda:N"')
    if resolved.type == "cuda":
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
        if resolved.index is None:  # "cuda" is the current GPU of this thread, not of the engine's
            resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


class TorchBackend(Backend):
    name = "torch"
    precisions = PRECISIONS

    @classmethod
    def on(cls, device: str) -> TorchBackend:
        return cls(resolve_device(device))

    def steps(self, network: torch.nn.Module) -> Steps:
        return network.steps()


BACKEND = TorchBackend
