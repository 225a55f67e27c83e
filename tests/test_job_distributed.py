"""The job API for runners that write segments elsewhere (`job.open_job`, `job.write_segment`,
`OpenJob.store`), without Ray: the unit the driver hands out, and that a segment missing frames
never gets its final name.

The clip is 12 frames of bikes.mp4 at 64x48 with a scene cut at frame 6; windows of 2 frames make
segments of 2 frames (one window each).
"""

import subprocess

import imageio_ffmpeg
import pytest
from conftest import make_clip_with_cut
from helpers import spec_of

from vsrealbasicvsr import job


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip_with_cut(tmp_path_factory.mktemp("clip") / "cut.mp4")


def segment_bytes(path, frames: int) -> bytes:
    """An FFV1 segment of the job's output size with `frames` frames."""
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=256x192:rate=25",
            "-frames:v",
            str(frames),
            "-c:v",
            "ffv1",
            "-f",
            "nut",
            str(path),
        ],
        check=True,
    )
    return path.read_bytes()


def test_open_job_hands_out_the_scene_cuts_and_windows_found_once(clip, tiny_checkpoint, tmp_path):
    with job.open_job(spec_of(clip, tmp_path / "x4.mkv", tiny_checkpoint)) as opened:
        unit = opened.unit
        assert (unit.cuts, unit.window, unit.frames, unit.segment_frames, unit.count) == ((6,), 2, 12, 2, 6)
        assert unit.source == clip and len(unit.weights_sha256) == 64
        assert opened.pending() == [0, 1, 2, 3, 4, 5]
        assert (tmp_path / "x4.mkv.rbvsr-work" / "job.json").is_file()


def test_a_segment_missing_frames_never_gets_its_final_name(clip, tiny_checkpoint, tmp_path):
    work = tmp_path / "x4.mkv.rbvsr-work"
    with job.open_job(spec_of(clip, tmp_path / "x4.mkv", tiny_checkpoint)) as opened:
        with pytest.raises(job.UpscaleError, match="segment 0 came out with 1 of its 2 frames"):
            opened.store(0, segment_bytes(tmp_path / "short.nut", 1))
        assert sorted(path.name for path in work.iterdir()) == ["job.json", "lock"]
        assert opened.pending() == [0, 1, 2, 3, 4, 5]
        opened.store(0, segment_bytes(tmp_path / "whole.nut", 2))
        assert opened.pending() == [1, 2, 3, 4, 5]
        assert (work / "segment_00000.nut").read_bytes() == (tmp_path / "whole.nut").read_bytes()
