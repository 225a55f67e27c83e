"""`vsrealbasicvsr upscale` never harms what is not the job's, and never mixes two jobs' work.

--overwrite replaces only the job's own files, an output that is the input is refused, two jobs
on one output exclude each other (a lock), a resume with other weights is refused, paths never
reach ffmpeg as options, frames of mixed sizes are refused, and the output keeps the input's
sample aspect ratio. Same clip and tiny checkpoint as test_cli_upscale.py.
"""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest
from conftest import TINY_CONFIG
from helpers import one_line_error
from test_cli_upscale import (
    CLI,
    COMMON,
    HEIGHT,
    WIDTH,
    clip,
    environment,
    ffmpeg,
    png_size,
    run_cli,
    upscaled,
)

__all__ = ["clip", "upscaled"]  # fixtures of test_cli_upscale.py, used here too


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` and its bytes, but a work folder's lock file (it names the last job)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "lock"
    }


def frame_folder(clip: Path, folder: Path, frames: int = 4, suffix: str = "png") -> Path:
    folder.mkdir()
    ffmpeg("-i", clip, "-frames:v", frames, folder / f"frame_%03d.{suffix}")
    return folder


@pytest.fixture(scope="module")
def other_tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny checkpoint of the same architecture as `tiny_checkpoint`, other weights."""
    import torch

    from vsrealbasicvsr.models import RealBasicVSRNet

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("other_ckpt") / "other_tiny_realbasicvsr.pth"
    torch.save(RealBasicVSRNet(**TINY_CONFIG).state_dict(), path)
    return path


# -- --overwrite replaces only what the job writes ------------------------------------------------


def test_overwrite_keeps_unrelated_files_of_an_output_folder(clip, tiny_checkpoint, tmp_path):
    mine = tmp_path / "MyStuff"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    (mine / "00000000.png").write_bytes(b"an earlier run's frame")
    (mine / "00000007.png").write_bytes(b"frame 7 of an earlier, longer run")
    before = tree(mine)
    args = [clip, mine, "--checkpoint", tiny_checkpoint, "--max-seq-len", "4", "--end", "4"]

    one_line_error(
        run_cli(*args, "--overwrite", check=False), "MyStuff holds files this command does not write (e.g. notes.txt)"
    )
    assert tree(mine) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["MyStuff"]

    run_cli(*args, "--overwrite-folder")
    assert (mine / "notes.txt").read_text() == "mine"
    frames = sorted(path.name for path in mine.iterdir() if path.name != "notes.txt")
    assert frames == [f"{index:08d}.png" for index in range(4)]
    assert {png_size(mine / name) for name in frames} == {(4 * WIDTH, 4 * HEIGHT)}

    # A folder that holds only frames of an earlier run: --overwrite replaces them.
    (mine / "notes.txt").unlink()
    one_line_error(run_cli(*args, check=False), "exists; pass --overwrite")
    run_cli(*args, "--overwrite")
    assert sorted(path.name for path in mine.iterdir()) == frames


def _same_folder(clip, tmp_path):
    frames = frame_folder(clip, tmp_path / "frames")
    return frames, frames


def _same_file(clip, tmp_path):
    own = tmp_path / "self.mp4"
    shutil.copy(clip, own)
    return own, own


def _symlink_to_input(clip, tmp_path):
    own = tmp_path / "in.mp4"
    shutil.copy(clip, own)
    (tmp_path / "link.mp4").symlink_to(own)
    return own, tmp_path / "link.mp4"


def _hard_link_to_input(clip, tmp_path):
    own = tmp_path / "in.mp4"
    shutil.copy(clip, own)
    os.link(own, tmp_path / "other_name.mp4")
    return own, tmp_path / "other_name.mp4"


def _symlink_to_input_folder(clip, tmp_path):
    frames = frame_folder(clip, tmp_path / "frames")
    (tmp_path / "frames_x4").symlink_to(frames)
    return frames, tmp_path / "frames_x4"


@pytest.mark.parametrize(
    "make, flag",
    [
        (_same_folder, "--overwrite"),
        (_same_folder, "--overwrite-folder"),
        (_same_file, "--overwrite"),
        (_symlink_to_input, "--overwrite"),
        (_hard_link_to_input, "--overwrite"),
        (_symlink_to_input_folder, "--overwrite"),
    ],
)
def test_output_that_is_the_input_is_refused(make, flag, clip, tiny_checkpoint, tmp_path):
    source, output = make(clip, tmp_path)
    before = tree(tmp_path)
    result = run_cli(source, output, "--checkpoint", tiny_checkpoint, "--max-seq-len", "4", flag, check=False)
    one_line_error(result, "is the input")
    assert tree(tmp_path) == before


def test_an_output_file_without_extension_is_not_replaced_by_a_folder(clip, tiny_checkpoint, tmp_path):
    output = tmp_path / "README"
    output.write_text("mine")
    result = run_cli(clip, output, "--checkpoint", tiny_checkpoint, "--overwrite", check=False)
    one_line_error(result, "README is a file, but an OUTPUT without an extension is a folder")
    assert output.read_text() == "mine"


def test_a_file_where_the_work_folder_goes_is_an_error_not_a_crash(clip, tiny_checkpoint, tmp_path):
    blocker = tmp_path / "x4.mkv.rbvsr-work"
    blocker.write_text("mine")
    result = run_cli(clip, tmp_path / "x4.mkv", "--checkpoint", tiny_checkpoint, "--overwrite", check=False)
    one_line_error(result, f"cannot lock the job in {blocker}")
    assert blocker.read_text() == "mine"


# -- one job per output ---------------------------------------------------------------------------


def start_job(clip, output, checkpoint, *extra) -> subprocess.Popen:
    """A job in the background, returned once it holds its lock and computes (job.json is written)."""
    job_file = output.with_name(output.name + ".rbvsr-work") / "job.json"
    job = subprocess.Popen(
        [*CLI, *map(str, [clip, output, "--checkpoint", checkpoint, *COMMON, *extra])],
        env=environment(),
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not job_file.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job_file.exists(), job.communicate()[1]
    return job


def test_a_second_job_on_the_same_output_stops_at_once(upscaled, clip, tiny_checkpoint, tmp_path):
    reference, _ = upscaled
    output = tmp_path / "x4.mkv"
    first = start_job(clip, output, tiny_checkpoint)
    first.send_signal(signal.SIGSTOP)  # holds it (and its lock) until the second one has tried
    try:
        assert first.poll() is None, "the first job ended before the second one could start"
        work = tree(output.with_name("x4.mkv.rbvsr-work"))
        for extra in [["--resume"], ["--overwrite"]]:
            second = run_cli(clip, output, "--checkpoint", tiny_checkpoint, *COMMON, *extra, check=False)
            one_line_error(second, f"another upscale job (pid {first.pid}, started ")
            assert f"is writing {output}" in second.stderr
            assert tree(output.with_name("x4.mkv.rbvsr-work")) == work
    finally:
        first.send_signal(signal.SIGCONT)
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert output.read_bytes() == reference.read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["x4.mkv"]


def test_a_killed_job_leaves_no_lock(upscaled, clip, tiny_checkpoint, tmp_path):
    reference, _ = upscaled
    output = tmp_path / "x4.mkv"
    first = start_job(clip, output, tiny_checkpoint)
    first.kill()
    first.communicate(timeout=60)
    run_cli(clip, output, "--checkpoint", tiny_checkpoint, *COMMON, "--resume")
    assert output.read_bytes() == reference.read_bytes()


# -- --resume with the weights the job began with -------------------------------------------------


@pytest.mark.parametrize("weights", ["checkpoint", "model"])
def test_resume_refuses_other_weights(weights, upscaled, clip, tiny_checkpoint, other_tiny_checkpoint, tmp_path):
    reference, _ = upscaled
    if weights == "checkpoint":
        path = tmp_path / "weights.pth"
        env, selection = environment(), ["--checkpoint", path]
    else:  # the installed weights of a registry model, replaced as `vsrealbasicvsr import --as` would
        from vsrealbasicvsr.weights import registry

        home = tmp_path / "home"
        home.mkdir()
        path = home / registry.MODELS["realbasicvsr"].filename
        env, selection = environment(VSREALBASICVSR_HOME=str(home)), ["--model", "realbasicvsr"]
    shutil.copy(tiny_checkpoint, path)
    output = tmp_path / "x4.mkv"
    work = tmp_path / "x4.mkv.rbvsr-work"
    args = [clip, output, *selection, *COMMON, "--quiet"]
    stopped = run_cli(*args, env={**env, "VSREALBASICVSR_STOP_AFTER_SEGMENTS": "1"}, check=False)
    assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr

    shutil.copy(other_tiny_checkpoint, path)
    kept = tree(work)
    refused = run_cli(*args, "--resume", env=env, check=False)
    one_line_error(refused, f"the weights {path} changed since the job")
    assert "--overwrite to start over with these weights" in refused.stderr
    assert tree(work) == kept and not output.exists()
    assert json.loads((work / "job.json").read_text())["fps"] is None  # a video's own frame rate

    shutil.copy(tiny_checkpoint, path)  # the original weights again (a new mtime, the same bytes)
    run_cli(*args, "--resume", env=env)
    assert output.read_bytes() == reference.read_bytes()


def test_job_file_frame_rates():
    from vsrealbasicvsr.job import JobSpec as Job

    def fingerprint(fps):
        known = {
            "input": Path(__file__),
            "output": Path("out.mp4"),
            "folder_out": False,
            "work": Path("out.mp4.rbvsr-work"),
            "codec": "ffv1",
            "crf": None,
            "start": 0,
            "end": None,
            "fps": fps,
            "scene_detect": True,
            "upscale_options": {},
        }
        flags = {field.name: False for field in dataclasses.fields(Job) if field.name not in known}  # quiet, ...
        return Job(**known, **flags).fingerprint(10, 8)

    assert json.loads(json.dumps(fingerprint(None)))["fps"] is None
    assert fingerprint(Fraction(24000, 1001))["fps"] == "24000/1001"
    assert fingerprint(Fraction(25))["fps"] == "25/1"


# -- what reaches ffmpeg, and what it would get wrong ---------------------------------------------


def test_paths_that_start_with_a_dash_are_files(upscaled, clip, tiny_checkpoint, tmp_path):
    reference, _ = upscaled
    shutil.copy(clip, tmp_path / "-in.mp4")
    # pathlib drops the `./`: the job sees the names `-in.mp4` and `-x4.mkv`.
    result = subprocess.run(
        [*CLI, "./-in.mp4", "./-x4.mkv", "--checkpoint", str(tiny_checkpoint), *COMMON],
        capture_output=True,
        text=True,
        env=environment(),
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "-x4.mkv").read_bytes() == reference.read_bytes()


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_frames_of_mixed_sizes_are_refused(suffix, clip, tiny_checkpoint, tmp_path):
    frames = frame_folder(clip, tmp_path / "frames", suffix=suffix)
    ffmpeg("-i", clip, "-frames:v", 1, "-vf", "scale=32:24", "-update", 1, frames / f"frame_003.{suffix}")
    result = run_cli(frames, tmp_path / "x4", "--checkpoint", tiny_checkpoint, "--max-seq-len", "4", check=False)
    one_line_error(
        result, f"frames of different sizes: frame_003.{suffix} is 32x24, frame_001.{suffix} is {WIDTH}x{HEIGHT}"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["frames"]


def test_output_keeps_the_sample_aspect_ratio(clip, tiny_checkpoint, tmp_path):
    anamorphic = tmp_path / "anamorphic.mp4"
    ffmpeg("-i", clip, "-frames:v", 4, "-vf", "setsar=4/3", "-c:v", "libx264", "-c:a", "copy", anamorphic)
    output = tmp_path / "x4.mp4"
    run_cli(anamorphic, output, "--checkpoint", tiny_checkpoint, "--max-seq-len", "4")
    with av.open(str(output)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (4 * WIDTH, 4 * HEIGHT)
        assert video.sample_aspect_ratio == Fraction(4, 3)
        assert sum(1 for _ in container.decode(video)) == 4
