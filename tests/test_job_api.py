"""The job API (`vsrealbasicvsr.job`) that the command line calls and other front ends will:
`plan` without weights equals the run, the progress callback, and cancel then resume.

The clip is 12 frames of bikes.mp4 at 64x48 with a scene cut at frame 6; windows of 4 frames
split at the cut make 4 windows ([0, 4), [4, 6), [6, 8), [8, 12)) and segments of one window
of 4 frames (split inside at the cut) make 3 segments ([0, 4), [4, 8), [8, 12)). FFV1 keeps the
frames as the pipeline made them.
"""

import threading
import time

import helpers
import pytest
from conftest import make_clip_with_cut

from vsrealbasicvsr import job


def spec_of(clip, output, checkpoint=None, **flags) -> job.JobSpec:
    return helpers.spec_of(clip, output, checkpoint, max_seq_len=4, **flags)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip_with_cut(tmp_path_factory.mktemp("clip") / "cut.mp4")


@pytest.fixture(scope="module")
def uninterrupted(clip, tiny_checkpoint, tmp_path_factory):
    """One run without a stop: (its output, its result, the events its callback got)."""
    output = tmp_path_factory.mktemp("whole") / "x4.mkv"
    events = []
    result = job.run(spec_of(clip, output, tiny_checkpoint), progress=events.append)
    return output, result, events


def test_plan_without_weights_equals_the_runs_windows_and_segments(clip, uninterrupted, tmp_path, monkeypatch):
    home = tmp_path / "no_weights"
    home.mkdir()
    monkeypatch.setenv("VSREALBASICVSR_HOME", str(home))
    monkeypatch.setenv("VSREALBASICVSR_MIRROR", "http://127.0.0.1:9")  # a download would fail
    planned = job.plan(spec_of(clip, tmp_path / "x4.mkv"))  # the model's weights are not installed
    assert list(home.iterdir()) == [] and list(tmp_path.iterdir()) == [home]
    assert planned.cuts == [6]
    assert [(w.first, w.end) for w in planned.clip_plan.windows] == [(0, 4), (4, 6), (6, 8), (8, 12)]

    _, result, events = uninterrupted
    assert not result.cancelled and result.frames == 12 and (result.width, result.height) == (256, 192)
    run_windows = sorted({event.window for event in events if event.kind == "frame"})
    assert run_windows == [w.first for w in planned.clip_plan.windows]
    # the run's segments: each ends where the frames handed over stood when it was done
    ends = [event.frames_done for event in events if event.kind == "segment_done"]
    assert [(s.first, s.end) for s in planned.segments] == list(zip([0, *ends[:-1]], ends, strict=True))
    assert [s.done for s in planned.segments] == [False, False, False]


def test_progress_callback_gets_monotonic_progress_and_segment_events(uninterrupted):
    _, _, events = uninterrupted
    kinds = [event.kind for event in events]
    assert all(isinstance(kind, job.ProgressKind) for kind in kinds)  # the kinds' one home
    assert kinds[0] == "started" and kinds[-1] == "joining"
    assert kinds.count("frame") == 12 and kinds.count("segment_done") == 3
    done = [event.frames_done for event in events]
    assert done == sorted(done) and done[0] == 0 and done[-1] == 12
    frame_counts = [event.frames_done for event in events if event.kind == "frame"]
    assert frame_counts == list(range(1, 13))
    finished = [(event.segment, event.segments_done) for event in events if event.kind == "segment_done"]
    assert finished == [(0, 1), (1, 2), (2, 3)]
    assert all(event.total_frames == 12 and event.segment_count == 3 and event.window_frames == 4 for event in events)


def test_cancel_keeps_every_finished_window_that_resume_completes(clip, tiny_checkpoint, uninterrupted, tmp_path):
    reference, _, _ = uninterrupted
    output = tmp_path / "x4.mkv"
    cancel = threading.Event()

    def stop_in_the_third_window(event: job.JobProgress) -> None:
        if event.kind == "frame" and event.segment == 2:
            cancel.set()

    stopped = job.run(spec_of(clip, output, tiny_checkpoint), progress=stop_in_the_third_window, cancel=cancel)
    # Both finished windows are kept; only the one in flight is lost.
    assert stopped.cancelled and (stopped.segments_done, stopped.segment_count) == (2, 3)
    assert not output.exists()
    work = tmp_path / "x4.mkv.rbvsr-work"
    assert not [path.name for path in work.iterdir() if path.name.startswith("partial")]
    assert [s.done for s in job.plan(spec_of(clip, output, tiny_checkpoint)).segments] == [True, True, False]

    with pytest.raises(job.UpscaleError, match="add --resume to continue"):
        job.run(spec_of(clip, output, tiny_checkpoint))
    events = []
    resumed = job.run(spec_of(clip, output, tiny_checkpoint, resume=True), progress=events.append)
    assert not resumed.cancelled and (resumed.segments_done, resumed.segment_count) == (3, 3)
    assert events[0].kind == "started" and events[0].frames_done == 8  # segments 0 and 1 were kept
    assert {event.segment for event in events if event.kind == "frame"} == {2}
    assert output.read_bytes() == reference.read_bytes()
    assert not work.exists()


def test_cancel_stops_the_window_in_flight(clip, tiny_checkpoint, tmp_path, monkeypatch):
    """Cancel mid-window: the window in flight (dropped anyway) stops at its next network step
    instead of being computed to its end."""
    from vsrealbasicvsr.engine import progress

    cancel = threading.Event()
    counting = progress.StepCounter._counting
    attempts = []  # the engine's attempts at windows, in the order their steps began

    def cancelling_in_the_second_window(counter, step, per_item):
        counted = counting(counter, step, per_item)

        def call(*inputs):
            if counter.work not in attempts:
                attempts.append(counter.work)
            if len(attempts) == 2 and not cancel.is_set():
                cancel.set()
                deadline = time.monotonic() + 60
                while not counter.work.stopped and time.monotonic() < deadline:  # the job's poll
                    time.sleep(0.05)
            return counted(*inputs)

        return call

    monkeypatch.setattr(progress.StepCounter, "_counting", cancelling_in_the_second_window)
    progress.reset_stats()
    stopped = job.run(spec_of(clip, tmp_path / "x4.mkv", tiny_checkpoint), cancel=cancel)
    assert stopped.cancelled and (stopped.segments_done, stopped.segment_count) == (1, 3)
    assert len(attempts) == 2 and attempts[1].stopped
    assert progress.stats()["frames"] == 4  # the second window handed out nothing: it was stopped


def test_a_job_file_that_writes_out_defaults_is_the_same_job(clip, tmp_path):
    from vsrealbasicvsr.job import job as job_module

    spec = spec_of(clip, tmp_path / "x4.mkv")
    fingerprint = {**spec.fingerprint(12, 8), "weights": {"path": "w.pth", "size": 1, "sha256": "0" * 64}}
    assert fingerprint["options"] == {"max_seq_len": "4", "device": "cpu", "tile": "-1"}  # model is the default
    written_out = {**fingerprint, "options": {**fingerprint["options"], "model": "realbasicvsr", "overlap": "8"}}
    job_module._check_same_job(written_out, fingerprint, spec.work)
    other = {**fingerprint, "options": {**fingerprint["options"], "overlap": "2"}}
    with pytest.raises(job.UpscaleError, match="belongs to another job"):
        job_module._check_same_job(other, fingerprint, spec.work)
