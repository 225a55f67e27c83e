"""backend="openvino": the network's steps run by OpenVINO, on the CPU or an Intel GPU.

Each step (`backends.modules.step_modules`) is converted from the loaded torch module, with the
checkpoint's weights (no model files of ours), the first time it meets an input shape, compiled
for the device in fp32, and kept for the life of the process, keyed by the step's weights, the
shapes and the device: a second engine on the same weights and shapes converts and compiles
nothing (`stats()` counts).

Across processes, the weights folder's `openvino-cache/` keeps both: each converted step as
OpenVINO IR (`<step>-<key>.xml/.bin`, the key covering the weights, the shapes, the source of
`models/` and OpenVINO's version), and OpenVINO's own compiled blobs (its `CACHE_DIR`). A later
process compiles from the IR's path, which OpenVINO answers from its blob: no tracing, no
conversion, no compiling.

The conversion goes through OpenVINO's PyTorch frontend directly rather than
`openvino.convert_model`, which also reports usage statistics to Intel unless the user opted
out; converting a user's video filter's steps is nothing to report.

The compiled steps are shared by the engines of the process; they run on the engine's torch
thread (`engine.threads.TorchThread`), which is the CPU's for every OpenVINO engine, so one step runs
at a time and each keeps one infer request.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..weights import registry
from . import Backend

if TYPE_CHECKING:
    import torch

    from ..models import Steps

INSTALL = 'pip install "vsrealbasicvsr[openvino]"'
CACHE_FOLDER = "openvino-cache"  # in registry.weights_dir()
# fp32 on every device: OpenVINO would compute in bf16 on CPUs that have it and in fp16 on GPUs
# by default. One inference at a time (the recurrence waits for each step): latency, not
# throughput.
COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
# On the CPU, threads free to move between cores: OpenVINO pins each of its threads to a core by
# default, and beside other work (the encoder of `vspipe | ffmpeg`) a pinned thread waits for its
# core while another is idle (docs/BENCHMARKS.md).
CPU_CONFIG = {"ENABLE_CPU_PINNING": False}
# OpenVINO's errors reach Python as RuntimeError carrying the plugin's text. Memory running out
# reads: on the CPU, its allocator's "Failed to allocate N bytes of memory" or C++'s
# std::bad_alloc; on a GPU, the plugin's own checks (one buffer over the device's largest
# allocation, or over the memory left) and OpenCL's allocation failures.
OUT_OF_MEMORY_WORDS = (
    "failed to allocate",
    "bad_alloc",
    "out of memory",
    "exceeded max size of memory",
    "out of gpu resources",
    "cl_out_of_resources",
    "cl_mem_object_allocation_failure",
)

_lock = threading.RLock()  # guards the three below
_core = None
_requests: dict[tuple, object] = {}  # (step, weights digest, input shapes, device) -> InferRequest
_stats = {"conversions": 0, "compilations": 0, "loaded_from_cache": 0}


def stats() -> dict:
    """Counters since the process started: `conversions` of a step from torch for an input
    shape; `compilations` of a step for an input shape, of which `loaded_from_cache` came from
    OpenVINO's CACHE_DIR."""
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
        super().__init__("cpu")  # the recurrence's tensors stay on the host
        self.openvino_name = device  # OpenVINO's name of the device

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

    def is_out_of_memory(self, error: Exception) -> bool:
        return super().is_out_of_memory(error) or _says_out_of_memory(error)

    def steps(self, network: torch.nn.Module) -> Steps:
        from ..models import Steps
        from .modules import step_modules

        return Steps(
            {name: _CompiledStep(name, module, self.openvino_name) for name, module in step_modules(network).items()}
        )


class _CompiledStep:
    """One step on OpenVINO: the torch module, converted and compiled per input shape."""

    def __init__(self, name: str, module: torch.nn.Module, device: str):
        self.name, self.module, self.device = name, module, device
        self.digest = _digest(module)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        import torch

        arrays = [np.ascontiguousarray(tensor.float().numpy()) for tensor in inputs]
        request = self._request(arrays)
        request.infer(arrays, share_inputs=True)
        # a copy: the request's output buffer is overwritten by its next inference
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    def _request(self, arrays):
        key = (self.name, self.digest, tuple(array.shape for array in arrays), self.device)
        with _lock:
            if key not in _requests:
                _requests[key] = self._compile(arrays)
            return _requests[key]

    def _compile(self, arrays):
        """An infer request of the step compiled for these input shapes, from the converted
        model in the cache folder when an earlier process left it there, else converted now
        (with `_lock` held)."""
        config = COMPILE_CONFIG | (CPU_CONFIG if self.device == "CPU" else {})
        cache = _cache_dir()
        if cache is None:
            return self._compiled(self._convert(arrays), config)
        config["CACHE_DIR"] = str(cache)
        path = cache / f"{self.name}-{_model_key(self.digest, [array.shape for array in arrays])}.xml"
        if path.exists() and path.with_suffix(".bin").exists():
            try:
                return self._compiled(str(path), config)
            except RuntimeError as error:
                if _says_out_of_memory(error):
                    raise
                # a damaged file (ours, in the cache): converted and written again
        model = self._convert(arrays)
        # From the file, also in the process that wrote it: OpenVINO keys its compiled blob by
        # the file, so that a later process loads the blob without reading the model.
        return self._compiled(str(path) if _save(model, path) else model, config)

    def _compiled(self, model, config: dict):
        compiled = _the_core().compile_model(model, self.device, config)
        _stats["compilations"] += 1
        if "CACHE_DIR" in config and compiled.get_property("LOADED_FROM_CACHE"):
            _stats["loaded_from_cache"] += 1
        return compiled.create_infer_request()

    def _convert(self, arrays):
        """The module traced on copies of these inputs and converted for their shapes."""
        import torch

        openvino = _openvino()
        from openvino.frontend import FrontEndManager
        from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

        # Traced outside inference mode (the engine's thread is in it), on plain copies of the inputs.
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # Tracing warns where Python reads a shape (SPyNet's sizes, flow_warp's grid): the
            # model is converted for these shapes only, so the values it keeps are right.
            warnings.simplefilter("ignore")
            example = tuple(torch.from_numpy(array.copy()) for array in arrays)
            decoder = TorchScriptPythonDecoder(self.module, example_input=example, shared_memory=False)
        frontend = FrontEndManager().load_by_framework("pytorch")
        graph = frontend.load(decoder)
        for index, array in enumerate(arrays):
            graph.set_partial_shape(graph.get_place_by_input_index(index), openvino.PartialShape(list(array.shape)))
        model = frontend.convert(graph)
        _stats["conversions"] += 1
        return model


def _save(model, path: Path) -> bool:
    """Writes the converted model as IR next to its final name and renames it there, .bin
    first, so that another process sees a whole model or none. False where the folder refuses
    the write, which only costs later processes a conversion."""
    temporary = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.xml")
    try:
        _openvino().save_model(model, str(temporary), compress_to_fp16=False)
        os.replace(temporary.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(temporary, path)
    except (OSError, RuntimeError):
        for leftover in (temporary, temporary.with_suffix(".bin")):
            leftover.unlink(missing_ok=True)
        return False
    return True


def _says_out_of_memory(error: Exception) -> bool:
    message = str(error).lower()
    return any(words in message for words in OUT_OF_MEMORY_WORDS)


def _cache_dir() -> Path | None:
    """OpenVINO's CACHE_DIR in the weights folder; None where it cannot be made (the steps are
    then compiled in every process)."""
    folder = registry.weights_dir() / CACHE_FOLDER
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder


def _model_key(digest: str, shapes) -> str:
    """The converted model's name in the cache: what the conversion's output depends on."""
    key = hashlib.blake2b(digest_size=12)
    key.update(f"{digest}{shapes}{_openvino().get_version()}".encode())
    key.update(_models_source())
    return key.hexdigest()


@functools.cache
def _models_source() -> bytes:
    """The digest of `models/`' source: the steps' code, which the traced graphs follow."""
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted((Path(__file__).resolve().parents[1] / "models").glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.digest()


def _digest(module: torch.nn.Module) -> str:
    """The module's architecture and weights, as a key of its compiled forms."""
    digest = hashlib.blake2b(repr(module).encode(), digest_size=16)
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(np.ascontiguousarray(tensor.detach().cpu().float().numpy()))
    return digest.hexdigest()


BACKEND = OpenVINOBackend
