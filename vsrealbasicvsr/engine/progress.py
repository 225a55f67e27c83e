"""The engines' work as progress, counted per job; and the engines' counters.

Frames leave a window only at its end, minutes apart on a CPU, so a job's progress counts the
work within the windows being computed too: each attempt at a window is a `WindowWork` whose
network steps `StepCounter` counts as they run. The attempts count into the `JobWork` of the
job whose engines make them, never into a process-wide total: two jobs at once (the page runs
one per device) or one after the other each see their own work, and a cancelled job stops its
own windows only (`JobWork.stop_windows`).

The native filter creates the engines, so a job cannot hand its `JobWork` to them: it creates
its `Upscale` calls inside `counting_into(work)`, and each engine created there (on that
thread, in that context) counts into it. An engine created elsewhere (a .vpy script) counts into
a `JobWork` of its own.

`stats()` are process-wide counters for tests and benchmarks. Import-light: no torch.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator

_stats = {"windows": 0, "frames": 0, "attempts": 0, "oom_retries": 0}


def stats() -> dict:
    """Counters of all engines since the process started (or `reset_stats`): `windows` computed
    (one per (sub-)window attempt that ran, however many tiles it took), output `frames`
    yielded, engine `attempts` (including those that failed), `oom_retries`."""
    return dict(_stats)


def reset_stats() -> None:
    for key in _stats:
        _stats[key] = 0


def count(counter: str) -> int:
    """Adds one to `counter` of `stats()`; returns the new count."""
    _stats[counter] += 1
    return _stats[counter]


class WindowStopped(RuntimeError):
    """A window's computation was stopped by `JobWork.stop_windows` (its job was cancelled)."""


class WindowWork:
    """One attempt at a window, as progress. Its network steps are counted as they run: for each
    computed frame (context frames too) and each tile, one step each of cleaning, flows (both
    directions), backward propagation, forward propagation and reconstruction, parts that take
    comparable time. Done steps count as that share of the frames the attempt hands out."""

    def __init__(self, output_frames: int, steps: int):
        self.output_frames, self.steps = output_frames, max(1, steps)
        self.steps_done = 0.0
        self.handed_out = 0
        self.stopped = False  # set by `JobWork.stop_windows`: the attempt fails at its next step

    def frames(self) -> float:
        """Output frames' worth of the work done, at least the frames handed out."""
        share = min(1.0, self.steps_done / self.steps)
        return max(float(self.handed_out), share * self.output_frames)


class JobWork:
    """The work of one job's engines (or of one engine, outside a job): the attempts at windows
    running now and the frames the ended ones handed out. Read from any thread while the
    engines' torch threads count."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: set[WindowWork] = set()
        self._finished = 0  # frames handed out by the attempts that ended

    def frames(self) -> float:
        """Output frames' worth of work done: the frames handed out, plus, for each window being
        computed, the share of its network steps done. Frames leave a window at its end; this
        moves while it is computed."""
        with self._lock:
            return self._finished + sum(work.frames() for work in self._running)

    def stop_windows(self) -> int:
        """Stops the windows being computed now: each fails with `WindowStopped` at its next
        network step, which the filter reports as the error of that window's frames. Returns
        how many it stopped.

        For a cancelled job: a window is the smallest unit of kept work, so the window in flight
        is dropped anyway, and computing it to its end would only delay the cancel (and the next
        job on the device) by up to a window's time."""
        with self._lock:
            for work in self._running:
                work.stopped = True
            return len(self._running)

    def start(self, output_frames: int, steps: int) -> WindowWork:
        """An attempt at a window of `output_frames` frames and `steps` network steps begins."""
        work = WindowWork(output_frames, steps)
        with self._lock:
            self._running.add(work)
        return work

    def hand_out(self, work: WindowWork) -> None:
        """The attempt handed out one more frame."""
        with self._lock:
            work.handed_out += 1

    def end(self, work: WindowWork) -> None:
        """The attempt's handed-out frames become finished work (a failed attempt's other
        steps are dropped: its retry does them again)."""
        with self._lock:
            self._running.discard(work)
            self._finished += work.handed_out


_job_work: contextvars.ContextVar[JobWork | None] = contextvars.ContextVar("rbvsr_job_work", default=None)


@contextlib.contextmanager
def counting_into(work: JobWork) -> Iterator[JobWork]:
    """Engines created inside count their work into `work` (create the job's `Upscale` calls
    here)."""
    token = _job_work.set(work)
    try:
        yield work
    finally:
        _job_work.reset(token)


def work_of_new_engine() -> JobWork:
    """The `JobWork` an engine created now counts into: its job's (`counting_into`), or its own."""
    return _job_work.get() or JobWork()


class StepCounter:
    """Counts the network's steps into the running attempt's `WindowWork`, as the steps that
    `counted` wraps run (the wrappers hold this counter, not the engine, so that no reference
    cycle keeps an engine's memory after its filter is freed).

    How much each step's call is worth is the network's (`STEP_WORK`: per item of its batch,
    frames or frame pairs); a frame's worth is their sum, flows counted for both directions."""

    def __init__(self, step_work: dict[str, float]):
        self.step_work = dict(step_work)
        self.steps_per_frame = sum(self.step_work.values()) + self.step_work.get("flow", 0)
        self.work: WindowWork | None = None

    def counted(self, steps):
        """`steps` (a `models.Steps`), each counting its calls."""
        return steps.replace(
            **{
                name: self._counting(step, self.step_work[name])
                for name, step in steps.items()
                if name in self.step_work
            }
        )

    def _counting(self, step, per_item: float):
        def count(*inputs):
            if self.work is not None and self.work.stopped:
                raise WindowStopped("Upscale: the window was stopped: its job was cancelled")
            output = step(*inputs)
            if self.work is not None:
                self.work.steps_done += per_item * inputs[0].shape[0]
            return output

        return count
