"""Progress that tells the truth: the engine counts its work within a window, and the job's
progress shows it (a bar on a terminal, lines otherwise) with an ETA only from a window's work."""

import os
import re
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO, make_clip_with_cut

from vsrealbasicvsr.engine import progress
from vsrealbasicvsr.engine.engine import Engine
from vsrealbasicvsr.job import progress as job_progress

FLOAT = 1
INTERVAL = "0.05"  # seconds between progress lines / bar redraws in these tests


def views(frames: np.ndarray):
    return [(*(memoryview(np.ascontiguousarray(plane)) for plane in frame), frame.shape[2] * 4) for frame in frames]


def tiny_engine(checkpoint, window: int) -> Engine:
    return Engine(40, 24, FLOAT, 32, checkpoint=checkpoint, max_seq_len=window, overlap=0, tile=-1, device="cpu")


def test_engine_progress_moves_before_a_window_hands_out_frames(tiny_checkpoint):
    frames = np.random.default_rng(0).random((4, 3, 24, 40), dtype=np.float32)
    engine = tiny_engine(tiny_checkpoint, 4)
    seen = []
    for _ in engine.run(views(frames), 0, 0, 0):
        seen.append(engine.job_work.frames())
    # When frame 0 leaves, cleaning, flows and backward propagation of all 4 frames are done,
    # 3 of each frame's 5 steps: more than half the window's work, though 1 frame was handed out.
    assert seen[0] > 2
    assert seen == sorted(seen) and engine.job_work.frames() == 4


def test_rate_and_eta_only_once_a_window_of_work_is_measured():
    work = [0.0]
    progress = job_progress.Progress(100, 0, quiet=True, window=10, work=lambda: work[0])
    progress.started = time.monotonic() - 10
    work[0] = 5.0
    assert progress.rate(progress.frames()) == "ETA --"
    progress.update(1)  # frames handed over never count less than the work
    work[0] = 20.0
    frames = progress.frames()
    assert frames == 20 and progress.rate(frames).startswith("2.00 fps, ETA 00:00:4")  # 80 frames at 2 fps
    work[0] = 3.0  # a retried window's work is done again: the count never goes back
    assert progress.frames() == 20

    # a window longer than RATE_AFTER_S of work: the rate of its steps so far, once that has passed
    work[0] = 0.0
    progress = job_progress.Progress(100, 0, quiet=True, window=60, work=lambda: work[0])
    work[0] = 6.0
    assert progress.rate(progress.frames()) == "ETA --"
    progress.started = time.monotonic() - job_progress.RATE_AFTER_S
    assert progress.rate(progress.frames()).startswith("0.05 fps, ETA 00:31:")  # 94 frames at 0.05 fps


LINE = re.compile(r"^upscale: ([\d.]+)/(\d+) frames \((\d+)%\), (.*)$")


def test_lines_without_a_terminal_come_within_windows_with_a_measured_eta(tiny_checkpoint, tmp_path):
    clip = make_clip_with_cut(tmp_path / "cut.mp4")
    env = dict(os.environ, PYTHONPATH=str(REPO), VSREALBASICVSR_PROGRESS_INTERVAL=INTERVAL)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vsrealbasicvsr",
            "upscale",
            str(clip),
            str(tmp_path / "x4.mkv"),
            "--checkpoint",
            str(tiny_checkpoint),
            "--max-seq-len",
            "4",
            "--codec",
            "ffv1",
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [match.groups() for line in result.stderr.splitlines() if (match := LINE.match(line))]
    counts = [float(count) for count, *_ in lines]
    assert counts == sorted(counts) and counts[-1] == 12 and all(total == "12" for _, total, *_ in lines)
    assert lines[0][3] == "ETA --"
    # the first window (4 frames) moves before it hands out any frame
    assert any(0 < count < 4 for count in counts), counts
    for count, _, _, rate in lines:
        if rate != "ETA --":  # only from a window's work, and sane for a run of seconds
            assert float(count) >= 4, lines
            hours, minutes, _ = map(int, rate.split("ETA ")[1].split(":"))
            assert hours == 0 and minutes < 10, lines


PTY_SCRIPT = """
import sys
import vapoursynth as vs
import vsrealbasicvsr
from vsrealbasicvsr.engine.progress import JobWork, counting_into
from vsrealbasicvsr.job.progress import Progress

clip = vs.core.std.BlankClip(format=vs.RGBS, width=128, height=128, length=12, color=[0.2, 0.5, 0.8])
with counting_into(JobWork()) as work:  # the engine the filter creates here counts into work
    upscaled = vsrealbasicvsr.upscale(clip, checkpoint=sys.argv[1], max_seq_len=12, overlap=0, tile=-1, device="cpu")
progress = Progress(12, 0, False, work=work.frames)
for n, frame in enumerate(upscaled.frames()):
    if n == 0:
        print("\\n<first frame handed over>", file=sys.stderr, flush=True)
    progress.update(1)
progress.close()
"""


def test_the_bar_on_a_terminal_moves_within_a_window(tiny_checkpoint):
    pty = pytest.importorskip("pty")
    controller, terminal = pty.openpty()
    fcntl, termios = pytest.importorskip("fcntl"), pytest.importorskip("termios")
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal's size
    env = dict(os.environ, PYTHONPATH=str(REPO), VSREALBASICVSR_PROGRESS_INTERVAL=INTERVAL)
    process = subprocess.Popen(
        [sys.executable, "-c", PTY_SCRIPT, str(tiny_checkpoint)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
        env=env,
    )
    os.close(terminal)
    output = b""
    try:
        while chunk := os.read(controller, 4096):
            output += chunk
    except OSError:  # the terminal closed with the process
        pass
    finally:
        os.close(controller)
    assert process.wait(timeout=300) == 0, output.decode(errors="replace")
    before, marker, _ = output.decode(errors="replace").partition("<first frame handed over>")
    assert marker, before
    # the one window of 12 frames: its bar moved several times before its first frame came out
    moving = {float(n) for n in re.findall(r"([\d.]+)/12 frames", before) if 0 < float(n) < 12}
    assert len(moving) >= 3, before


def test_each_jobs_engines_count_their_own_work(tiny_checkpoint):
    """Two jobs at once (the page runs one per device; the job API lets a program run several)
    and one after the other each see their own work, and a cancel stops its own job's window
    only: engines count into the work of the job that created them."""
    frames = np.random.default_rng(0).random((4, 3, 24, 40), dtype=np.float32)
    first_job, second_job = progress.JobWork(), progress.JobWork()
    with progress.counting_into(first_job):
        first = tiny_engine(tiny_checkpoint, 4)
    with progress.counting_into(second_job):
        second = tiny_engine(tiny_checkpoint, 2)
    on_its_own = tiny_engine(tiny_checkpoint, 4)  # outside any job: its own work
    assert first.job_work is first_job and second.job_work is second_job
    assert on_its_own.job_work not in (first_job, second_job)

    in_flight = first.run(views(frames), 0, 0, 0)
    next(in_flight)  # the first job's window is being computed
    assert 1 <= first_job.frames() < 4 and second_job.frames() == 0
    assert len(list(second.run(views(frames[:2]), 0, 0, 0))) == 2  # the second job, meanwhile
    assert second_job.frames() == 2 and 1 <= first_job.frames() < 4
    assert second_job.stop_windows() == 0  # the second job's cancel: nothing of the first's stops
    assert len(list(in_flight)) == 3
    assert (first_job.frames(), second_job.frames()) == (4, 2)

    list(on_its_own.run(views(frames), 0, 0, 0))  # a later engine, in no job
    assert (first_job.frames(), second_job.frames(), on_its_own.job_work.frames()) == (4, 2, 4)

    in_flight = first.run(views(frames), 4, 0, 0)
    next(in_flight)
    assert first_job.stop_windows() == 1  # the first job's cancel stops its window at the next step
    with pytest.raises(progress.WindowStopped):
        list(in_flight)
