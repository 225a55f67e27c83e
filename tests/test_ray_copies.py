"""What a Ray node reads is what the driver sent (issue 21, item 4), without a Ray cluster: the
node's copies of the weights and the video file live in a folder only this user can enter, are
used only when their sha256 is the driver's, and `job.write_segment` refuses a video file of
other bytes. `ray.get` is stood in for by a stub whose object references are the bytes.
"""

import hashlib
import os
import sys
import tempfile
import types
from pathlib import Path

import pytest
from conftest import make_clip_with_cut

from vsrealbasicvsr import job
from vsrealbasicvsr.frontends import ray_runner

WEIGHTS, VIDEO = b"the driver's weights", b"the driver's video"


@pytest.fixture
def node(tmp_path, monkeypatch):
    """This node's temporary folder, and `ray.get` returning the reference itself."""
    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(get=lambda ref: ref))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def copies_of(weights: bytes = WEIGHTS, video: bytes = VIDEO, key: str = "0123456789abcdef") -> ray_runner.NodeCopies:
    return ray_runner.NodeCopies(
        key,
        weights,
        hashlib.sha256(WEIGHTS).hexdigest(),
        video,
        hashlib.sha256(VIDEO).hexdigest(),
        "input.mp4",
    )


def test_copies_are_private_and_a_planted_copy_is_replaced(node):
    copies = copies_of()
    folder = node / f"vsrealbasicvsr-ray-{os.geteuid()}" / copies.key
    folder.parent.mkdir(mode=0o700)
    folder.mkdir(mode=0o700)
    (folder / "input.mp4").write_bytes(b"a planted clip")  # what another run (or user) left there
    weights, video = copies.on_this_node()
    assert (weights.read_bytes(), video.read_bytes()) == (WEIGHTS, VIDEO)
    assert folder.parent.stat().st_mode & 0o777 == 0o700
    assert sorted(path.name for path in folder.iterdir()) == ["input.mp4", "weights.pth"]


def test_a_fresh_node_gets_a_private_folder(node):
    copies = copies_of()
    copies.on_this_node()
    for folder in (node / f"vsrealbasicvsr-ray-{os.geteuid()}", copies.folder()):
        assert folder.stat().st_mode & 0o777 == 0o700 and not folder.is_symlink()


@pytest.mark.parametrize("plant", ["link", "open"])
def test_a_users_folder_that_is_a_link_or_open_to_others_is_refused(plant, node):
    folder = node / f"vsrealbasicvsr-ray-{os.geteuid()}"
    if plant == "link":
        elsewhere = node / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        folder.symlink_to(elsewhere)
    else:
        folder.mkdir()
        folder.chmod(0o777)
    with pytest.raises(job.UpscaleError, match="cannot keep the job's copies on this node"):
        copies_of().on_this_node()


def test_bytes_that_do_not_match_the_drivers_sha256_are_not_used(node):
    with pytest.raises(job.UpscaleError, match="came through Ray's object store changed"):
        copies_of(video=b"other bytes").on_this_node()


def test_write_segment_reads_only_the_drivers_video(tiny_checkpoint, tmp_path):
    clip = make_clip_with_cut(tmp_path / "cut.mp4")
    options = {"max_seq_len": 2, "device": "cpu", "tile": -1, "checkpoint": str(tiny_checkpoint)}
    spec = job.new_spec(clip, tmp_path / "x4.mkv", options, codec="ffv1", quiet=True)
    spec.work.mkdir()
    weights_sha256 = hashlib.sha256(Path(tiny_checkpoint).read_bytes()).hexdigest()
    unit = job.SegmentJob(spec, clip, hashlib.sha256(b"another video").hexdigest(), 12, 2, (6,), weights_sha256)
    with pytest.raises(job.UpscaleError, match="is not the video the job began with"):
        job.write_segment(unit, 0)
    assert list(spec.work.iterdir()) == []
