"""backend="openvino": the network's steps run by OpenVINO, on the CPU or an Intel GPU.

Each step (`backends.step_modules`) is converted from the loaded torch module, with the
checkpoint's weights (`openvino.convert_model`: no model files of ours), the first time it meets
an input shape, compiled for the device in fp32, and kept for the life of the process, keyed by
the step's weights, the shapes and the device: a second engine on the same weights and shapes
converts and compiles nothing (`stats()` counts). OpenVINO's own cache (`CACHE_DIR`, the weights
folder's `openvino-cache/`) keeps the compiled steps across processes, so that a later process
loads them instead of compiling (it still converts).

The compiled steps are shared by the engines of the process; they run on the engine's torch
thread (`engine.TorchThread`), which is the CPU's for every OpenVINO engine, so one step runs
at a time and each keeps one infer request.
"""

from __future__ import annotations

import hashlib
import re
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import registry
from ..models import Steps
from . import Backend, step_modules

INSTALL = 'pip install "vsrealbasicvsr[openvino]"'
CACHE_FOLDER = "openvino-cache"  # in registry.weights_dir()
# fp32 on every device: OpenVINO would compute in bf16 on CPUs that have it and in fp16 on GPUs
# by default. One inference at a time (the recurrence waits for each step): latency, not
# throughput.
COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}

_lock = threading.RLock()  # guards the three below
_core = None
_requests: dict[tuple, object] = {}  # (step, weights digest, input shapes, device) -> InferRequest
_stats = {"compilations": 0, "loaded_from_cache": 0}


def stats() -> dict:
    """Counters since the process started: `compilations` of a step for an input shape (each
    after converting it), of which `loaded_from_cache` came from OpenVINO's CACHE_DIR."""
    with _lock:
        return dict(_stats)


def _openvino():
    try:
        import openvino
    except ImportError:
        raise ValueError(
            f'Upscale: backend="openvino" needs the openvino package, which is not installed; {INSTALL}'
        ) from None
    return openvino


def _the_core():
    global _core
    with _lock:
        if _core is None:
            _core = _openvino().Core()
        return _core


def openvino_device(device: str) -> str:
    """OpenVINO's name of a device option: auto and cpu -> CPU, gpu -> GPU, gpu:N -> GPU.N."""
    if device in ("auto", "cpu"):
        return "CPU"
    if match := re.fullmatch(r"gpu(?::(\d+))?", device):
        return "GPU" if match[1] is None else f"GPU.{match[1]}"
    raise ValueError(
        f'Upscale: device {device!r} is not one of OpenVINO\'s; use device="cpu" (or "auto"), '
        '"gpu" or "gpu:N" for an Intel GPU, or backend="torch" for CUDA'
    )


def _has_device(name: str, available: list[str]) -> bool:
    # OpenVINO lists one GPU as "GPU", several as "GPU.0", "GPU.1", ...
    return (
        name in available
        or (name == "GPU" and any(a.startswith("GPU.") for a in available))
        or (name == "GPU.0" and "GPU" in available)
    )


class OpenVINOBackend(Backend):
    name = "openvino"
    precisions = ("fp32",)

    def __init__(self, device: str):
        super().__init__(torch.device("cpu"))  # the recurrence's tensors stay on the host
        self.device = device  # OpenVINO's name

    @classmethod
    def on(cls, device: str) -> OpenVINOBackend:
        name = openvino_device(device)
        available = _the_core().available_devices
        if not _has_device(name, available):
            raise ValueError(
                f"Upscale: OpenVINO finds no device {name} here (it has {', '.join(available)}); "
                'use device="cpu", or install the device\'s OpenVINO driver'
            )
        return cls(name)

    def steps(self, network: torch.nn.Module) -> Steps:
        return Steps(
            **{name: _CompiledStep(name, module, self.device) for name, module in step_modules(network).items()}
        )


class _CompiledStep:
    """One step on OpenVINO: the torch module, converted and compiled per input shape."""

    def __init__(self, name: str, module: torch.nn.Module, device: str):
        self.name, self.module, self.device = name, module, device
        self.digest = _digest(module)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        arrays = [np.ascontiguousarray(tensor.float().numpy()) for tensor in inputs]
        request = self._request(inputs, arrays)
        request.infer(arrays, share_inputs=True)
        # a copy: the request's output buffer is overwritten by its next inference
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    def _request(self, inputs, arrays):
        key = (self.name, self.digest, tuple(array.shape for array in arrays), self.device)
        with _lock:
            if key not in _requests:
                _requests[key] = self._compile(inputs, arrays)
            return _requests[key]

    def _compile(self, inputs, arrays):
        """Converts the module for these input shapes and compiles it (with `_lock` held)."""
        openvino = _openvino()
        # Traced outside inference mode (the engine's thread is in it), on plain copies of the inputs.
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # Tracing warns where Python reads a shape (SPyNet's sizes, flow_warp's grid): the
            # model is converted for these shapes only, so the values it keeps are right.
            warnings.simplefilter("ignore")
            example = tuple(torch.from_numpy(array.copy()) for array in arrays)
            model = openvino.convert_model(
                self.module, example_input=example, input=[list(array.shape) for array in arrays], share_weights=False
            )
        config = dict(COMPILE_CONFIG)
        cache = _cache_dir()
        if cache is not None:
            config["CACHE_DIR"] = str(cache)
        compiled = _the_core().compile_model(model, self.device, config)
        _stats["compilations"] += 1
        if cache is not None and compiled.get_property("LOADED_FROM_CACHE"):
            _stats["loaded_from_cache"] += 1
        return compiled.create_infer_request()


def _cache_dir() -> Path | None:
    """OpenVINO's CACHE_DIR in the weights folder; None where it cannot be made (the steps are
    then compiled in every process)."""
    folder = registry.weights_dir() / CACHE_FOLDER
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder


def _digest(module: torch.nn.Module) -> str:
    """The module's architecture and weights, as a key of its compiled forms."""
    digest = hashlib.blake2b(repr(module).encode(), digest_size=16)
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(np.ascontiguousarray(tensor.detach().cpu().float().numpy()))
    return digest.hexdigest()


BACKEND = OpenVINOBackend
