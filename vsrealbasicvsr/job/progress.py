"""The job's progress on stderr, one consumer of the job's progress callback (`job.run`)."""

from __future__ import annotations

import os
import sys
import threading
import time

from .events import JobProgress, ProgressKind, percent

# Seconds between progress lines when stderr is not a terminal; the environment variable sets
# another (tests use a short one). A terminal's bar is redrawn every second, or at that
# interval when it is shorter.
PROGRESS_INTERVAL_S = 30.0
PROGRESS_INTERVAL_ENV = "VSREALBASICVSR_PROGRESS_INTERVAL"
BAR_REDRAW_S = 1.0
# A rate is shown once the work timed covers a window, or after this long for windows longer
# than that (steps within a window are counted alike but do not all take the same time).
RATE_AFTER_S = 120.0


class Progress:
    """The job's progress on stderr: a tqdm bar on a terminal, plain lines otherwise (every
    PROGRESS_INTERVAL_S seconds and at each segment's end), or nothing (quiet).

    Counted in frames of work: the frames handed over, or ahead of them `work()`, the job's work
    within the windows being computed (`JobProgress.work`), since frames leave a window only at
    its end, minutes apart on a CPU. The rate and the ETA come from the work measured since
    the start, once it covers a window or RATE_AFTER_S have passed (`ETA --` before: the first
    frames' rate means nothing).
    """

    def __init__(self, total: int, done: int, quiet: bool, window: int = 1, work=None):
        self.total, self.done, self.quiet = total, done, quiet
        self.first, self.shown = done, float(done)
        self.work = work or (lambda: 0.0)  # without it: the frames handed over only
        self.work_start = self.work()
        self.measured_enough = min(window, total - done)  # frames of work before a rate is shown
        self.started = time.monotonic()
        self.interval = float(os.environ.get(PROGRESS_INTERVAL_ENV) or PROGRESS_INTERVAL_S)
        self.bar = None
        self._lock = threading.Lock()  # the ticker and the segment writer both show progress
        self._stop = threading.Event()
        if quiet:
            return
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=done,
                unit="frame",
                dynamic_ncols=True,
                desc=self.percent_text(done),
                bar_format="{desc}|{bar}| {n:.1f}/{total} frames [{elapsed}{postfix}]",
            )
        period = min(self.interval, BAR_REDRAW_S) if self.bar is not None else self.interval
        self._ticker = threading.Thread(target=self._tick, args=(period,), name="rbvsr-progress", daemon=True)
        self._ticker.start()

    def _tick(self, period: float) -> None:
        while not self._stop.wait(period):
            self._show()

    def frames(self) -> float:
        """Frames of work done: at least those handed over, never fewer than shown before."""
        work = self.first + self.work() - self.work_start
        self.shown = min(float(self.total), max(self.shown, float(self.done), work))
        return self.shown

    def speed(self, frames: float) -> tuple[float, float] | None:
        """(frames per second, seconds left) from the work since the start, or None until it
        means something."""
        measured, elapsed = frames - self.first, time.monotonic() - self.started
        if measured <= 0 or (measured < self.measured_enough and elapsed < RATE_AFTER_S):
            return None
        fps = measured / elapsed
        return fps, (self.total - frames) / fps

    def rate(self, frames: float) -> str:
        """'<fps> fps, ETA <h:m:s>' (`speed`), or 'ETA --' until it means something."""
        speed = self.speed(frames)
        if speed is None:
            return "ETA --"
        fps, left = speed
        return f"{fps:.2f} fps, ETA {time.strftime('%H:%M:%S', time.gmtime(left))}"

    def percent_text(self, frames: float) -> str:
        """'NNN%': the share of the job done, rounded down (a job at 99.9 % is not done)."""
        return f"{int(percent(frames, self.total)):3d}%"

    def _show(self) -> None:
        with self._lock:
            frames = self.frames()
            if self.bar is not None:
                self.bar.n = frames
                self.bar.set_description_str(self.percent_text(frames), refresh=False)
                self.bar.set_postfix_str(self.rate(frames))  # and redraws
            elif not self.quiet:
                count = f"{frames:.1f}".removesuffix(".0")
                print(
                    f"upscale: {count}/{self.total} frames ({self.percent_text(frames).strip()}), {self.rate(frames)}",
                    file=sys.stderr,
                    flush=True,
                )

    def update(self, frames: int = 1, segment_done: bool = False) -> None:
        """`frames` more were handed over; at a segment's end, a line (without a terminal)."""
        self.done += frames
        if segment_done and self.bar is None:
            self._show()

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if not self.quiet:
            self._ticker.join()
        if self.bar is not None:
            self._show()
            self.bar.close()


class ProgressPrinter:
    """A job's progress callback (`job.run`) that shows it with `Progress` on stderr."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.progress: Progress | None = None

    def __call__(self, event: JobProgress) -> None:
        if event.kind == ProgressKind.STARTED:
            self.progress = Progress(event.total_frames, event.frames_done, self.quiet, event.window_frames, event.work)
        elif event.kind == ProgressKind.FRAME:
            self.progress.update(1)
        elif event.kind == ProgressKind.SEGMENT_DONE:
            self.progress.update(0, segment_done=True)
        elif event.kind == ProgressKind.JOINING:
            self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
