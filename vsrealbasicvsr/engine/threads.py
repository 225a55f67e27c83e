"""Torch's and OpenMP's threads: the engines' thread per device (`TorchThread`), and how the CPU
engine's OpenMP threads wait: passively, unless the user chose otherwise.

Torch's CPU kernels run on OpenMP threads, one per core by default, which meet at a barrier at the
end of every kernel (thousands per frame). By default OpenMP's idle threads spin at that barrier
for a while before they sleep. Alone on the machine that saves a wake-up per kernel; beside
another busy process (the encoder of `vspipe | ffmpeg`, a second job) it is a collapse: the
thread the neighbour displaced runs only in the slices the scheduler gives it, every barrier waits
for it, and the threads that arrived first spin on the cores it and the neighbour need.
`OMP_WAIT_POLICY=PASSIVE` makes them sleep at once instead (figures: docs/BENCHMARKS.md).

The knob: `OMP_WAIT_POLICY`, OpenMP's own. Set by the user, it is left as it is (`ACTIVE`: spin,
for a machine that does nothing else); unset, the engine sets `PASSIVE`. The thread count stays
torch's default (one per core) or `OMP_NUM_THREADS`: a count that changes with the load would make
the output depend on it (a different split of the work rounds differently).

Why at import time: libgomp (torch's OpenMP on Linux) reads the variable once, when it is loaded,
that is at `import torch`; set any later, even before the first torch operation, it has no
effect, and OpenMP has no call to change it. So `vsrealbasicvsr.engine.engine`, the module that brings
torch into a VapourSynth process when the first `Upscale` is created, calls `prefer_passive_wait`
before it imports torch (docs/DESIGN.md). Where torch was loaded before (a script that imported
it, another torch plugin), it is too late and nothing is changed; so it is where another library
loaded the same libgomp first (a plugin built with OpenMP), which this cannot see.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
DEFAULT_WAIT_POLICY = "PASSIVE"


def prefer_passive_wait() -> bool:
    """Sets OMP_WAIT_POLICY=PASSIVE for this process when the user has not set it and torch is
    not loaded yet (after that OpenMP would not read it). Returns whether it set it."""
    if WAIT_POLICY_ENV in os.environ or "torch" in sys.modules:
        return False
    os.environ[WAIT_POLICY_ENV] = DEFAULT_WAIT_POLICY
    return True


def import_torch():
    """torch, imported after `prefer_passive_wait`. For the modules below the engine that need
    torch on some paths only (asking for CUDA devices, reading a checkpoint file): they import it
    there, through this, rather than at their top, so that planning for the CPU loads no torch, and
    a process that plans first still gets the wait policy when its engine starts."""
    prefer_passive_wait()
    import torch

    return torch


class TorchThread:
    """The thread on which the engines of one device run all their torch work: loading, windows,
    conversions. One per device (`for_device`), shared by the engines on it.

    Why: torch's CPU kernels parallelise with OpenMP, and libgomp gives every thread that starts
    parallel work its own team of threads. VapourSynth creates a filter on the script's thread and
    calls it from whichever of its worker threads is free, so engines run from the calling threads
    build several teams; once a process has more OpenMP threads than cores, libgomp makes idle team
    threads sleep instead of spin between kernels, and each of the network's thousands of kernels
    per frame then waits for a wake-up (the measurement: docs/BENCHMARKS.md). Engines on one device take turns
    step by step, as they would share its cores anyway; engines on different GPUs run side by side."""

    _DONE = object()
    _per_device: ClassVar[dict[str, TorchThread]] = {}
    _per_device_lock = threading.Lock()

    def __init__(self):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rbvsr-torch")

    @classmethod
    def for_device(cls, device) -> TorchThread:
        """The thread of `device` (a torch device, or its name)."""
        with cls._per_device_lock:
            if str(device) not in cls._per_device:
                cls._per_device[str(device)] = cls()
            return cls._per_device[str(device)]

    def call(self, function, *args):
        """function(*args) on this thread; its exception is raised in the caller."""
        return self._executor.submit(function, *args).result()

    def iterate(self, generator):
        """The items of `generator`, each computed on this thread when the caller asks for it, so
        frames still leave one by one."""
        try:
            while (item := self.call(self._step, generator)) is not self._DONE:
                yield item
        finally:
            if generator.gi_frame is not None:  # the caller stopped early: finish it where it ran
                self.call(generator.close)

    @classmethod
    def _step(cls, generator):
        import torch  # loaded already: the engine that runs on this thread imported it

        # Inference mode is a per-thread state: entered per step, not across a yield, because the
        # steps of several windows may alternate on this thread.
        with torch.inference_mode():
            return next(generator, cls._DONE)
