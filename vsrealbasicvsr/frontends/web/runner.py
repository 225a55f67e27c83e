"""Runs the server's jobs through the job API: one running job per device, the others queued in
the order they were started; each runs `job.run` on a thread of its own, with a progress callback
and a cancel event. A job that was running when the server stopped is queued again, first, and
resumes from the finished segments in its work folder.
"""

from __future__ import annotations

import collections
import os
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path

from ... import job
from . import jobs as web_jobs
from .store import JobStore

# Test hook: "N:FILE" makes each run wait after its N-th finished segment while FILE exists, so a
# test can look at (or kill) a server mid-job at a known point.
HOLD_ENV = "VSREALBASICVSR_WEB_HOLD"
# The live speed is the work of the last TRAILING_S seconds (at least a window's, when that took
# longer): the speed drifts as a machine warms up or gets busy, and the time left follows it.
TRAILING_S = 60.0
# The device key of jobs run on a Ray cluster: one job at a time there, its segments spread over
# the cluster's devices.
RAY_DEVICE = "ray"


class RunningJob:
    """A job being run: its cancel event and its live progress (the store has it per segment)."""

    def __init__(self, row: dict, store: JobStore, hold: tuple[int, Path] | None, ray: bool = False):
        self.id, self.device = row["id"], row["device"]
        self.store, self.hold, self.ray = store, hold, ray
        self.cancel = threading.Event()
        self.progress: job.Progress | None = None
        self.frames_done = row["frames_done"]
        self.segments_done = row["segments_done"]
        self.segments_this_run = 0
        self.joining = False
        self.run_seconds_before = row["run_seconds"] or 0.0
        self.began = time.monotonic()
        self.window_frames = 1
        self._samples: collections.deque[tuple[float, float]] = collections.deque()  # (time, frames)
        self._samples_lock = threading.Lock()

    def run_seconds(self) -> float:
        return self.run_seconds_before + time.monotonic() - self.began

    def on_progress(self, event: job.JobProgress) -> None:
        """The job's callback, on the job's threads: counts, and the store at each segment."""
        if event.kind == job.ProgressKind.STARTED:
            # This job's work only (another job may run on another device of this process); on
            # a Ray cluster the work is counted by the frames its tasks report.
            work = (lambda: 0.0) if self.ray else event.work
            self.window_frames = event.window_frames
            self.progress = job.Progress(
                event.total_frames, event.frames_done, quiet=True, window=event.window_frames, work=work
            )
            self.store.update(
                self.id,
                frames_done=event.frames_done,
                segments_done=event.segments_done,
                segment_count=event.segment_count,
            )
        elif event.kind == job.ProgressKind.FRAME:
            self.progress.update(1)
        elif event.kind == job.ProgressKind.SEGMENT_DONE:
            self.segments_this_run += 1
            self.store.update(
                self.id,
                frames_done=event.frames_done,
                segments_done=event.segments_done,
                run_seconds=self.run_seconds(),
            )
        elif event.kind == job.ProgressKind.JOINING:
            self.joining = True
        self.frames_done, self.segments_done = event.frames_done, event.segments_done
        if event.kind == job.ProgressKind.SEGMENT_DONE and self.hold and self.segments_this_run == self.hold[0]:
            while self.hold[1].exists() and not self.cancel.is_set():
                time.sleep(0.1)

    def live(self) -> dict:
        """Frames of work done (within the window being computed too), speed and time left."""
        if self.progress is None:
            return {"frames": float(self.frames_done), "fps": None, "eta_s": None, "joining": self.joining}
        frames = self.progress.frames()
        fps = self.trailing_fps(frames, time.monotonic())
        if fps is None:  # until the trailing span means something: the speed since the start
            speed = self.progress.speed(frames)
            fps = speed and speed[0]
        eta_s = (self.progress.total - frames) / fps if fps else None
        return {"frames": frames, "fps": fps, "eta_s": eta_s, "joining": self.joining}

    def trailing_fps(self, frames: float, now: float) -> float | None:
        """Frames per second over the last TRAILING_S seconds (stretched back to cover at least a
        window of work), from the counts seen by earlier calls; None until such a span is seen."""
        with self._samples_lock:
            samples = self._samples
            samples.append((now, frames))
            # Drop samples that the span does not need: it starts at the newest sample that is
            # TRAILING_S old and a window of work behind.
            while len(samples) > 2 and (
                now - samples[1][0] >= TRAILING_S and frames - samples[1][1] >= self.window_frames
            ):
                samples.popleft()
            then, frames_then = samples[0]
        if now - then < TRAILING_S or frames - frames_then < self.window_frames:
            return None
        return (frames - frames_then) / (now - then)


class Runner:
    """The queue: `enqueue`, `cancel`, `live`; `start` once the server runs."""

    def __init__(self, store: JobStore, folder: Path, ray: str | None = None):
        """`ray`: run the jobs on the Ray cluster at this address ("" for Ray's own choice), or
        None for this process."""
        self.store, self.folder, self.ray = store, folder, ray
        self._lock = threading.Lock()
        self._running: dict[str, RunningJob] = {}
        self.hold = _hold_of(os.environ.get(HOLD_ENV))

    def start(self) -> None:
        """Queues the jobs that were running when the server stopped (before all others: their
        queue time is kept), and starts what can start."""
        for row in self.store.in_state("running"):
            self.store.update(row["id"], state="queued")
        self.dispatch()

    def queue_of(self, row: dict) -> str | None:
        """The queue a job waits in: its device's, or with Ray the cluster's."""
        return RAY_DEVICE if self.ray is not None else row.get("device")

    def enqueue(self, job_id: str) -> None:
        self.store.update(job_id, state="queued", queued=time.time(), error=None, finished=None)
        self.dispatch()

    def dispatch(self) -> None:
        """Starts the first queued job of each device that runs none."""
        with self._lock:
            busy = {self.queue_of(self.store.get(job_id) or {}) for job_id in self._running}
            for row in self.store.in_state("queued"):
                if self.queue_of(row) in busy:
                    continue
                busy.add(self.queue_of(row))
                running = RunningJob(row, self.store, self.hold, ray=self.ray is not None)
                self._running[row["id"]] = running
                self.store.update(row["id"], state="running", started=time.time())
                threading.Thread(target=self._work, args=(running,), name=f"rbvsr-web-{row['id']}", daemon=True).start()

    def cancel(self, job_id: str) -> bool:
        """Cancels a queued job at once, a running one at its next frame; False for neither."""
        with self._lock:
            running = self._running.get(job_id)
            if running is not None:
                running.cancel.set()
                return True
            row = self.store.get(job_id)
            if row is None or row["state"] != "queued":
                return False
            self.store.update(job_id, state="cancelled", finished=time.time())
            return True

    def is_running(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._running

    def busy(self) -> bool:
        with self._lock:
            return bool(self._running)

    def running(self, job_id: str) -> RunningJob | None:
        with self._lock:
            return self._running.get(job_id)

    def _work(self, running: RunningJob) -> None:
        row = self.store.get(running.id)
        state, error = "failed", None
        try:
            output = web_jobs.output_path(self.folder, row)
            if output.exists():
                # The server stopped between the join's final rename and this row's update: the
                # output is whole (the rename is atomic); only the work folder may be left.
                shutil.rmtree(output.parent / (output.name + ".rbvsr-work"), ignore_errors=True)
                state = "done"
            else:
                spec = web_jobs.spec_of(self.folder, row)
                if self.ray is None:
                    result = job.run(spec, progress=running.on_progress, cancel=running.cancel)
                else:  # the command's distributed runner, as `upscale --ray` runs it
                    from .. import ray_runner

                    result = ray_runner.run(
                        spec, address=self.ray or None, progress=running.on_progress, cancel=running.cancel
                    )
                state = "cancelled" if result.cancelled else "done"
        except job.UpscaleError as upscale_error:
            error = str(upscale_error).replace(row["input"], row["name"])  # the user's name for the input
        except Exception as unexpected:  # noqa: BLE001 - the job fails, the server keeps serving
            traceback.print_exc(file=sys.stderr)
            error = f"internal error ({type(unexpected).__name__}: {unexpected}); see the server's log"
        finally:
            values = {"frames_done": running.frames_done, "segments_done": running.segments_done}
            if state == "done":
                count = self.store.get(running.id)["segment_count"]
                values = {"frames_done": row["info"]["frames"], "segments_done": count, "segment_count": count}
            self.store.update(
                running.id, state=state, error=error, finished=time.time(), run_seconds=running.run_seconds(), **values
            )
            with self._lock:
                del self._running[running.id]
            self.dispatch()


def _hold_of(text: str | None) -> tuple[int, Path] | None:
    if not text:
        return None
    segments, _, path = text.partition(":")
    return int(segments), Path(path)
