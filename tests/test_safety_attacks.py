"""Never lose a user's file, part 2 (issue 21): what a hostile or careless user can plant or
damage around a job, and that the job then neither harms the user's files nor reports a wrong
result as success.

Links planted at the work folder, a segment or a temporary name; the input inside the output
folder; segments damaged, replaced, emptied or not recorded in job.json; an output that
appears while the job runs; a damaged frame in a folder input. Through the job API (in this
process, no command start-up) on the clip of test_job_api.py: 12 frames at 64x48 with a scene
cut at frame 6, windows of 4 frames, segments of one window's length ([0, 4), [4, 8), [8, 12)),
FFV1 so that frames compare exactly.
"""

import json
import os
import shutil
import threading
from pathlib import Path

import av
import pytest
from conftest import make_clip_with_cut
from test_cli_upscale import ffmpeg

from vsrealbasicvsr import job

FRAMES = 12


def spec_of(clip, output, checkpoint, **flags) -> job.JobSpec:
    options = {"model": "realbasicvsr", "max_seq_len": 4, "device": "cpu", "tile": -1, "checkpoint": str(checkpoint)}
    return job.new_spec(clip, output, options, codec="ffv1", quiet=True, **flags)


def decoded_frames(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(frame.to_ndarray(format="yuv420p")) for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip_with_cut(tmp_path_factory.mktemp("clip") / "cut.mp4")


@pytest.fixture(scope="module")
def whole(clip, tiny_checkpoint, tmp_path_factory) -> list[bytes]:
    """The frames of one run without a stop."""
    output = tmp_path_factory.mktemp("whole") / "x4.mkv"
    job.run(spec_of(clip, output, tiny_checkpoint))
    return decoded_frames(output)


def stopped_after_one_segment(clip, output, checkpoint, **flags) -> Path:
    """A job cancelled once its first segment is done; returns its work folder."""
    cancel = threading.Event()

    def progress(event):
        if event.kind == "segment_done":
            cancel.set()

    result = job.run(spec_of(clip, output, checkpoint, **flags), progress=progress, cancel=cancel)
    assert result.cancelled and result.segments_done == 1
    return output.with_name(output.name + ".rbvsr-work")


# -- 1. the input inside the output folder ---------------------------------------------------------


@pytest.mark.parametrize("flag", ["overwrite", "overwrite_folder"])
def test_an_input_inside_the_output_folder_is_refused(flag, clip, tiny_checkpoint, tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    frame = folder / "00000050.png"
    ffmpeg("-i", clip, "-frames:v", 1, frame)
    (folder / "notes.txt").write_text("mine")
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    with pytest.raises(job.UpscaleError, match="is inside the output folder"):
        spec_of(frame, folder, tiny_checkpoint, **{flag: True})
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before


def test_frames_of_a_folder_inside_the_output_folder_are_refused(clip, tiny_checkpoint, tmp_path):
    frames = tmp_path / "out" / "frames"
    frames.mkdir(parents=True)
    ffmpeg("-i", clip, "-frames:v", 2, frames / "%08d.png")
    with pytest.raises(job.UpscaleError, match="is inside the output folder"):
        spec_of(frames, tmp_path / "out", tiny_checkpoint, overwrite_folder=True)


# -- 2. links where the job writes ------------------------------------------------------------------


@pytest.mark.parametrize("flags", [{}, {"overwrite": True}, {"resume": True}])
def test_a_link_at_the_work_folder_is_never_followed(flags, clip, tiny_checkpoint, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "file1.txt").write_text("a")
    output = tmp_path / "out.mkv"
    work = tmp_path / "out.mkv.rbvsr-work"
    work.symlink_to(precious)
    with pytest.raises(job.UpscaleError, match="is a link"):
        job.run(spec_of(clip, output, tiny_checkpoint, **flags))
    assert [path.name for path in precious.iterdir()] == ["file1.txt"]
    assert (precious / "file1.txt").read_text() == "a"
    assert work.is_symlink() and not output.exists()


def test_a_link_at_the_lock_is_never_followed(tmp_path):
    from vsrealbasicvsr.job.lock import lock_work

    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    work = tmp_path / "out.mkv.rbvsr-work"
    work.mkdir()
    (work / "lock").symlink_to(victim)
    with pytest.raises(job.UpscaleError, match="cannot lock the job in"):
        lock_work(work, tmp_path / "out.mkv")
    assert victim.read_text() == "mine"


def test_overwrite_removes_a_link_in_the_work_folder_as_a_link(clip, tiny_checkpoint, whole, tmp_path):
    output = tmp_path / "x4.mkv"
    work = stopped_after_one_segment(clip, output, tiny_checkpoint)
    photos = tmp_path / "userphotos"
    photos.mkdir()
    (photos / "diary.txt").write_text("dear diary")
    (work / "segment_00000.nut").unlink()
    (work / "segment_00000.nut").symlink_to(photos)
    result = job.run(spec_of(clip, output, tiny_checkpoint, overwrite=True))
    assert result.frames == FRAMES and decoded_frames(output) == whole
    assert [path.name for path in photos.iterdir()] == ["diary.txt"]


def test_a_link_that_replaces_the_work_folder_is_caught_by_the_lock(tmp_path):
    from vsrealbasicvsr.job.lock import check_work, lock_work

    work = tmp_path / "out.mkv.rbvsr-work"
    descriptor = lock_work(work, tmp_path / "out.mkv")
    try:
        check_work(work, descriptor)
        elsewhere = tmp_path / "elsewhere"
        work.rename(elsewhere)
        work.symlink_to(elsewhere)  # the same folder, now through a link
        with pytest.raises(job.UpscaleError, match="moved or replaced"):
            check_work(work, descriptor)
    finally:
        os.close(descriptor)


def test_a_segment_that_is_a_link_to_a_users_folder_is_never_followed(clip, tiny_checkpoint, tmp_path):
    output = tmp_path / "frames_x4"
    work = stopped_after_one_segment(clip, output, tiny_checkpoint)
    photos = tmp_path / "userphotos"
    photos.mkdir()
    (photos / "diary.txt").write_text("dear diary")
    ffmpeg("-i", clip, "-frames:v", 1, photos / "holiday.png")
    before = {path.name: path.read_bytes() for path in photos.iterdir()}
    segment = work / "segment_00000"
    shutil.rmtree(segment)
    segment.symlink_to(photos)
    result = job.run(spec_of(clip, output, tiny_checkpoint, resume=True))
    assert not result.cancelled and result.frames == FRAMES
    assert {path.name: path.read_bytes() for path in photos.iterdir()} == before
    assert sorted(path.name for path in output.iterdir()) == [f"{index:08d}.png" for index in range(FRAMES)]


# -- 5, 8. segments that are not what the job wrote -------------------------------------------------


def _truncate(segment: Path, work: Path) -> None:
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) // 2])


def _empty(segment: Path, work: Path) -> None:
    segment.write_bytes(b"")


def _link_to_other_video(segment: Path, work: Path) -> None:
    other = work.parent / "other.nut"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=256x192:rate=25", "-frames:v", 8, "-c:v", "ffv1", other)
    segment.unlink()
    segment.symlink_to(other)


def _replaced_without_job_file(segment: Path, work: Path) -> None:
    """Another whole video of the right size and length, and no job.json to say what was written."""
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=256x192:rate=25", "-frames:v", 8, "-c:v", "ffv1", "-f", "nut", segment)
    (work / "job.json").unlink()


@pytest.mark.parametrize("damage", [_truncate, _empty, _link_to_other_video, _replaced_without_job_file])
def test_a_damaged_or_foreign_segment_is_computed_again(damage, clip, tiny_checkpoint, whole, tmp_path):
    output = tmp_path / "x4.mkv"
    work = stopped_after_one_segment(clip, output, tiny_checkpoint)
    damage(work / "segment_00000.nut", work)
    result = job.run(spec_of(clip, output, tiny_checkpoint, resume=True))
    assert not result.cancelled and result.frames == FRAMES
    assert decoded_frames(output) == whole


def test_job_file_records_each_segment_by_size_and_sha256(clip, tiny_checkpoint, tmp_path):
    import hashlib

    work = stopped_after_one_segment(clip, tmp_path / "x4.mkv", tiny_checkpoint)
    recorded = json.loads((work / "job.json").read_text())["segments"]
    data = (work / "segment_00000.nut").read_bytes()
    assert recorded == {"0": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}


def test_a_job_file_whose_weights_are_a_string_is_another_jobs(clip, tiny_checkpoint, tmp_path):
    output = tmp_path / "x4.mkv"
    work = stopped_after_one_segment(clip, output, tiny_checkpoint)
    recorded = json.loads((work / "job.json").read_text())
    (work / "job.json").write_text(json.dumps({**recorded, "weights": "abc"}))
    with pytest.raises(job.UpscaleError, match="weights .* changed since the job"):
        job.run(spec_of(clip, output, tiny_checkpoint, resume=True))


def test_a_segment_changed_before_the_join_is_computed_again(clip, tiny_checkpoint, whole, tmp_path):
    output = tmp_path / "x4.mkv"
    work = output.with_name(output.name + ".rbvsr-work")

    def progress(event):  # the last segment is done: damage the first, just before the join
        done.append(event.frames_done)
        if event.kind == "segment_done" and event.segments_done == event.segment_count and len(damaged) == 0:
            damaged.append(True)
            _truncate(work / "segment_00000.nut", work)

    damaged, done = [], []
    result = job.run(spec_of(clip, output, tiny_checkpoint), progress=progress)
    assert damaged and result.frames == FRAMES
    assert decoded_frames(output) == whole
    assert done == sorted(done) and done[-1] == FRAMES  # frames computed again are not counted twice


# -- 7. an output that appears while the job runs ------------------------------------------------


@pytest.mark.parametrize("folder", [False, True])
def test_an_output_that_appears_during_the_run_is_kept(folder, clip, tiny_checkpoint, tmp_path):
    output = tmp_path / ("frames_x4" if folder else "x4.mkv")
    mine = output / "00000003.png" if folder else output

    def progress(event):
        if event.kind == "joining":
            if folder:
                output.mkdir()
            mine.write_text("the user's own")

    with pytest.raises(job.UpscaleError, match="appeared while the job ran"):
        job.run(spec_of(clip, output, tiny_checkpoint), progress=progress)
    assert mine.read_text() == "the user's own"
    if folder:
        assert [path.name for path in output.iterdir()] == ["00000003.png"]
    # moved away, the finished job is joined without computing anything again
    mine.unlink()
    if folder:
        output.rmdir()
    events = []
    result = job.run(spec_of(clip, output, tiny_checkpoint, resume=True), progress=events.append)
    assert result.frames == FRAMES and not any(event.kind == "frame" for event in events)


# -- 6 and LOW: frame folders ------------------------------------------------------------------------


def _truncated_png(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:300])


def _text_file(path: Path) -> None:
    path.write_text("not a picture")


@pytest.mark.parametrize("damage", [_truncated_png, _text_file])
def test_a_damaged_frame_in_a_folder_input_is_refused_by_name(damage, clip, tiny_checkpoint, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    ffmpeg("-i", clip, "-frames:v", 4, frames / "frame_%03d.png")
    damage(frames / "frame_003.png")
    with pytest.raises(job.UpscaleError, match="frame_003.png .*(cannot be decoded|not a PNG or JPEG)"):
        job.run(spec_of(frames, tmp_path / "x4.mkv", tiny_checkpoint))


def test_quotes_and_newlines_in_a_frame_folder_path(clip, tiny_checkpoint, tmp_path):
    frames = tmp_path / "it's a\nnew folder"
    frames.mkdir()
    ffmpeg("-i", clip, "-frames:v", 3, frames / "it's frame %d.png")
    result = job.run(spec_of(frames, tmp_path / "x4.mkv", tiny_checkpoint))
    assert result.frames == 3


def test_a_fifo_input_is_refused_at_once(tiny_checkpoint, tmp_path):
    fifo = tmp_path / "in.mp4"
    os.mkfifo(fifo)
    with pytest.raises(job.UpscaleError, match="not a regular file or a folder"):
        spec_of(fifo, tmp_path / "x4.mkv", tiny_checkpoint)
    frames = tmp_path / "frames"
    frames.mkdir()
    os.mkfifo(frames / "frame_1.png")
    with pytest.raises(job.UpscaleError, match="frame_1.png is not a regular file"):
        job.run(spec_of(frames, tmp_path / "x4.mkv", tiny_checkpoint))


@pytest.mark.parametrize("name", ["x4.png", "x4.jpg", "x4.gif", "x4.y4m", "x4.txt"])
def test_an_output_suffix_that_is_no_video_container_is_refused(name, clip, tiny_checkpoint, tmp_path):
    with pytest.raises(job.UpscaleError, match="video container's extension"):
        spec_of(clip, tmp_path / name, tiny_checkpoint)


def test_crf_out_of_range_is_refused(clip, tiny_checkpoint, tmp_path):
    options = {"checkpoint": str(tiny_checkpoint)}
    for crf in (-5, 52):
        with pytest.raises(job.UpscaleError, match=f"--crf {crf} is out of range for libx264; use 0"):
            job.new_spec(clip, tmp_path / "x4.mkv", options, codec="libx264", crf=crf)


@pytest.mark.parametrize("fps", ["0", "-1", "1e8"])
def test_a_frame_rate_that_is_none_is_refused(fps, clip, tiny_checkpoint, tmp_path):
    from fractions import Fraction

    with pytest.raises(job.UpscaleError, match=f"--fps {Fraction(fps)} is not a frame rate"):
        job.new_spec(clip, tmp_path / "x4.mkv", {"checkpoint": str(tiny_checkpoint)}, fps=Fraction(fps))


def frames_of_size(folder: Path, width: int, height: int) -> Path:
    folder.mkdir()
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size={width}x{height}:rate=25", "-frames:v", 2, folder / "%03d.png")
    return folder


@pytest.mark.parametrize("size", [(1, 1), (3, 3)])
def test_tiny_and_odd_sizes_are_upscaled(size, tiny_checkpoint, tmp_path):
    width, height = size
    frames = frames_of_size(tmp_path / "frames", width, height)
    result = job.run(spec_of(frames, tmp_path / "x4.mkv", tiny_checkpoint))
    assert (result.frames, result.width, result.height) == (2, 4 * width, 4 * height)
    assert len(decoded_frames(tmp_path / "x4.mkv")) == 2


def test_an_output_the_encoder_cannot_take_is_refused_before_any_frame(tiny_checkpoint, tmp_path):
    frames = frames_of_size(tmp_path / "frames", 4097, 2)  # x4: 16388 wide, more than x264 takes
    options = {"max_seq_len": 2, "device": "cpu", "tile": -1, "checkpoint": str(tiny_checkpoint)}
    spec = job.new_spec(frames, tmp_path / "x4.mkv", options, codec="libx264", quiet=True)
    events = []
    with pytest.raises(job.UpscaleError, match="ffmpeg cannot write 16388x8 yuv420p video with libx264"):
        job.run(spec, progress=events.append)
    assert events == [] and sorted(path.name for path in tmp_path.iterdir()) == ["frames"]


# -- LOW: what the job changes unasked is said -------------------------------------------------------


def test_alpha_and_a_variable_frame_rate_are_said_and_a_plain_clip_says_nothing(clip, tiny_checkpoint, tmp_path):
    from fractions import Fraction

    from vsrealbasicvsr.job.source import input_notes

    frames = tmp_path / "frames"
    frames.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-frames:v", 2, "-pix_fmt", "rgba", frames / "%d.png")
    vfr = tmp_path / "vfr.mkv"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-frames:v", 8),
        *("-vf", "setpts=if(lt(N\\,4)\\,N\\,2*N)/25/TB", "-fps_mode", "passthrough", "-c:v", "ffv1", vfr),
    )
    notes = {
        source.name: input_notes(spec_of(source, tmp_path / "x4.mkv", tiny_checkpoint), Fraction(25))
        for source in (frames, vfr, clip)
    }
    assert [len(found) for found in notes.values()] == [1, 1, 0], notes
    assert "has an alpha channel" in notes["frames"][0]
    assert "has a variable frame rate; the output keeps every frame at a constant 25 fps" in notes["vfr.mkv"][0]
