"""IconVSR and BasicVSR++ through core.rbvsr.Upscale: the golden outputs, windows that do not
depend on request order, the model's scale, and checkpoint errors that name the argument."""

import random
import threading

import numpy as np
import pytest
import torch
import vapoursynth as vs
from conftest import GOLDEN_DIR
from helpers import clip_of

from vsrealbasicvsr.models import BasicVSRPlusPlusNet, IconVSRNet

core = vs.core
# Max abs difference to the golden output clamped to [0, 1]: the network's own (as in
# test_family_models.py). The engine's channels-last layout leaves SPyNet in the default one;
# with SPyNet channels-last too, BasicVSR++ was 3.4e-5 away (tests/data/README.md).
TOLERANCE = {"iconvsr_small": 1e-5, "basicvsrpp_small": 2e-5}


def frame_array(frame):
    return np.stack([np.asarray(frame[p]) for p in range(frame.format.num_planes)]).copy()


@pytest.mark.parametrize("name", list(TOLERANCE))
def test_one_window_without_overlap_is_the_golden_output_clamped(name):
    golden = np.load(GOLDEN_DIR / f"{name}.npz")
    frames = golden["input"][0]
    clip = core.rbvsr.Upscale(
        clip_of(frames),
        checkpoint=str(GOLDEN_DIR / f"{name}.pth"),
        max_seq_len=len(frames),
        overlap=0,
        tile=-1,
        device="cpu",
        precision="fp32",
    )
    expected = np.clip(golden["output"][0], 0, 1)
    assert (clip.width, clip.height) == (expected.shape[-1], expected.shape[-2])
    difference = np.abs(np.stack([frame_array(clip.get_frame(n)) for n in range(len(frames))]) - expected)
    print(f"{name} through Upscale: max abs difference {difference.max():.3g}, mean {difference.mean():.3g}")
    assert difference.max() <= TOLERANCE[name]
    assert difference.mean() <= 1e-6


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("family")
    networks = {
        "iconvsr": IconVSRNet(mid_channels=4, num_blocks=1),
        "basicvsrpp": BasicVSRPlusPlusNet(mid_channels=8, num_blocks=1),
        "basicvsrpp-x1": BasicVSRPlusPlusNet(mid_channels=8, num_blocks=1, is_low_res_input=False),
    }
    paths = {}
    for name, network in networks.items():
        paths[name] = folder / f"{name}.pth"
        torch.save(network.state_dict(), paths[name])
    return paths


def pull(clip, order, threads):
    core.num_threads = threads
    results, order = {}, list(order)

    def worker(part):
        for n in part:
            results[n] = frame_array(clip.get_frame(n))

    workers = [threading.Thread(target=worker, args=(order[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(300)
    return results


@pytest.mark.parametrize("name", ["iconvsr", "basicvsrpp"])
def test_small_windows_with_default_overlap_do_not_depend_on_request_order(tiny_checkpoints, name):
    rng = np.random.default_rng(0)
    frames = rng.random((8, 3, 24, 24), dtype=np.float32)
    threads = core.num_threads

    def fresh():
        return core.rbvsr.Upscale(clip_of(frames), checkpoint=str(tiny_checkpoints[name]), max_seq_len=3, device="cpu")

    try:
        reference = pull(fresh(), range(8), threads=1)
        shuffled = list(range(8))
        random.Random(1).shuffle(shuffled)
        got = pull(fresh(), shuffled, threads=4)
    finally:
        core.num_threads = threads
    assert sorted(got) == list(range(8))
    for n in range(8):
        assert np.array_equal(got[n], reference[n]), f"frame {n} differs"


def test_a_restoration_model_keeps_the_frame_size(tiny_checkpoints):
    frames = np.random.default_rng(0).random((2, 3, 20, 28), dtype=np.float32)
    clip = core.rbvsr.Upscale(clip_of(frames), checkpoint=str(tiny_checkpoints["basicvsrpp-x1"]), device="cpu")
    assert (clip.width, clip.height) == (28, 20)
    assert frame_array(clip.get_frame(1)).shape == (3, 20, 28)


def test_keyframe_stride_is_for_iconvsr_only(tiny_checkpoints):
    frames = np.zeros((2, 3, 16, 16), np.float32)
    with pytest.raises(vs.Error, match="Upscale: keyframe_stride is for IconVSR models, and BasicVSRPlusPlusNet"):
        core.rbvsr.Upscale(clip_of(frames), checkpoint=str(tiny_checkpoints["basicvsrpp"]), keyframe_stride=2)
    with pytest.raises(vs.Error, match="Upscale: keyframe_stride must be >= 1"):
        core.rbvsr.Upscale(clip_of(frames), checkpoint=str(tiny_checkpoints["iconvsr"]), keyframe_stride=0)


def test_a_text_file_as_checkpoint_is_one_line_naming_the_argument_and_the_file(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("the weights are at https://example.org/weights.pth\n")
    frames = np.zeros((2, 3, 16, 16), np.float32)
    with pytest.raises(vs.Error) as error:
        core.rbvsr.Upscale(clip_of(frames), checkpoint=str(notes), device="cpu")
    assert str(error.value) == (
        f"Upscale: checkpoint={notes} is a text file, not a torch checkpoint; pass the .pth file of the weights"
    )


@pytest.mark.parametrize("name,scale", [("basicvsrpp-x1", 1), ("iconvsr", 4)])
def test_the_command_plans_and_writes_each_network_at_its_scale(tiny_checkpoints, tmp_path, name, scale):
    import av
    from conftest import make_clip_with_cut
    from test_cli_upscale import run_cli

    clip = make_clip_with_cut(tmp_path / "in.mp4")  # 12 frames of 64x48, a scene cut at frame 6
    output = tmp_path / "out.mkv"
    common = ["--checkpoint", tiny_checkpoints[name], "--max-seq-len", "6", "--overlap", "1", "--codec", "ffv1"]
    planned = run_cli(clip, output, *common, "--dry-run").stdout
    assert f"{scale * 64}x{scale * 48}, 12 frames" in planned and f" x{scale}" in planned
    run_cli(clip, output, *common)
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (scale * 64, scale * 48)
        assert sum(1 for _ in container.decode(stream)) == 12


# The tiny checkpoints' networks: architecture as the plan names it, feature channels, scale.
TINY_SHAPES = {
    "iconvsr": ("IconVSR", 4, 4),
    "basicvsrpp": ("BasicVSRPlusPlus", 8, 4),
    "basicvsrpp-x1": ("BasicVSRPlusPlus", 8, 1),
}
DRY_RUN_WINDOW = 6  # the budget the dry runs below get holds this window under the network's own terms


def dry_run_lines(capsys, clip, output, checkpoint, budget, *flags):
    """`upscale --dry-run` of `clip` with `checkpoint`, automatic untiled windows in `budget`
    bytes on the CPU, with one context frame a side: its lines by their first word."""
    from vsrealbasicvsr.frontends import cli

    common = ["--checkpoint", str(checkpoint), "--max-seq-len", "0", "--max-memory", str(budget), "--tile", "off"]
    code = cli.main(
        ["upscale", str(clip), str(output), *common, "--device", "cpu", "--overlap", "1", "--no-scene-detect"]
        + ["--dry-run", *flags]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    return {line.split()[0]: line for line in printed.out.splitlines() if line.strip()}


@pytest.mark.parametrize("name", list(TINY_SHAPES))
def test_the_dry_run_names_the_network_its_scale_and_sizes_windows_with_its_terms(
    tiny_checkpoints, tmp_path, capsys, name
):
    from conftest import make_clip_with_cut
    from helpers import automatic_window

    from vsrealbasicvsr.engine import memory

    architecture, mid, scale = TINY_SHAPES[name]
    clip = make_clip_with_cut(tmp_path / "in.mp4")  # 12 frames of 64x48
    # the budget of a window of DRY_RUN_WINDOW frames (+1 context frame a side) under this
    # network's terms, which BasicVSR's terms would fill with another window
    budget = memory.window_bytes(DRY_RUN_WINDOW + 2, 48, 64, mid, 4, 1, f"{architecture}Net", scale)
    assert automatic_window(budget, 64, 48, mid, f"{architecture}Net", scale, 1) == DRY_RUN_WINDOW
    assert automatic_window(budget, 64, 48, mid, "BasicVSRNet", 4, 1) != DRY_RUN_WINDOW

    lines = dry_run_lines(capsys, clip, tmp_path / "out.mkv", tiny_checkpoints[name], budget)
    assert lines["model"].endswith(f": {architecture} x{scale}")
    assert lines["output"].startswith(f"output     {tmp_path / 'out.mkv'}: {scale * 64}x{scale * 48}, 12 frames")
    assert lines["windows"].startswith(f"windows    2: {DRY_RUN_WINDOW} frames each from frame 0")
    needed = memory.window_bytes(DRY_RUN_WINDOW + 2, 48, 64, mid, 4, 1, f"{architecture}Net", scale)
    assert f"about {needed / 2**20:.0f} MiB per window of {DRY_RUN_WINDOW} frames" in lines["memory"]
    assert "ray" not in lines


def test_windows_are_sized_with_what_each_network_keeps(tiny_checkpoints):
    from vsrealbasicvsr.engine import memory
    from vsrealbasicvsr.engine.engine import Engine

    def growth(architecture, scale=4):  # bytes a window grows by per frame, 320x180, mid 64, fp32
        return memory.window_bytes(31, 180, 320, 64, 4, 1, architecture, scale) - memory.window_bytes(
            30, 180, 320, 64, 4, 1, architecture, scale
        )

    # BasicVSR++ keeps the frame's features and three branches' (4 x 64 channels) per frame,
    # BasicVSR its backward features (64); x1 BasicVSR++ keeps them at a sixteenth of the pixels
    assert 3 < growth("BasicVSRPlusPlusNet") / growth("BasicVSRNet") < 4
    assert growth("BasicVSRPlusPlusNet", 1) < growth("BasicVSRNet") / 3
    assert growth("BasicVSRNet") < growth("IconVSRNet") < 1.3 * growth("BasicVSRNet")

    engines = {
        name: Engine(
            64, 48, 1, 32, checkpoint=str(tiny_checkpoints[name]), device="cpu", max_seq_len=0, max_memory=90_000_000
        )
        for name in ("basicvsrpp", "basicvsrpp-x1")
    }
    assert (engines["basicvsrpp"].window_memory.architecture, engines["basicvsrpp"].scale) == ("BasicVSRPlusPlusNet", 4)
    assert engines["basicvsrpp-x1"].window_memory.scale == 1
    # the same budget holds a longer automatic window of the x1 network, whose features are smaller
    assert engines["basicvsrpp-x1"].max_seq_len > engines["basicvsrpp"].max_seq_len


@pytest.mark.parametrize("name", ["basicvsrpp", "basicvsrpp-x1", "iconvsr"])
def test_an_injected_out_of_memory_recovers_with_the_smaller_windows_frames(tiny_checkpoints, monkeypatch, name):
    from vsrealbasicvsr.engine import progress
    from vsrealbasicvsr.engine.engine import INJECT_OOM_ENV, Engine

    frames = np.random.default_rng(5).random((4, 3, 24, 40), dtype=np.float32)
    views = [(*(memoryview(np.ascontiguousarray(f[p])) for p in range(3)), 40 * 4) for f in frames]
    arguments = dict(checkpoint=str(tiny_checkpoints[name]), device="cpu", overlap=1, tile=-1)
    monkeypatch.setenv(INJECT_OOM_ENV, "1")
    progress.reset_stats()
    engine = Engine(40, 24, 1, 32, max_seq_len=4, **arguments)
    results = list(engine.run(views, 0, 0, 0))
    assert engine.sizes.window == 2 and progress.stats()["oom_retries"] == 1
    monkeypatch.delenv(INJECT_OOM_ENV)
    fresh = Engine(40, 24, 1, 32, max_seq_len=2, **arguments)
    expected = list(fresh.run(views[0:3], 0, 0, 1)) + list(fresh.run(views[1:4], 1, 1, 0))
    assert [r[0] for r in results] == [0, 1, 2, 3]
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(results, expected, strict=True))


def test_bf16_on_the_cpu_is_a_clear_error_for_deformable_networks(tiny_checkpoints):
    frames = np.zeros((2, 3, 16, 16), np.float32)
    with pytest.raises(vs.Error) as error:
        core.rbvsr.Upscale(clip_of(frames), checkpoint=str(tiny_checkpoints["iconvsr"]), device="cpu", precision="bf16")
    assert str(error.value) == (
        'Upscale: precision="bf16" on the CPU is not available for IconVSRNet: its deformable convolution '
        '(torchvision) has no bf16 CPU kernel; use precision="fp32"'
    )
