"""IconVSR and BasicVSR++: parity with MMEditing's own networks (tests/data/README.md), the
deformable convolutions' offset layout, and what the engine relies on beyond MMEditing."""

import ast
import re

import numpy as np
import pytest
import torch
from conftest import GOLDEN_DIR

from vsrealbasicvsr.models import BasicVSRPlusPlusNet, IconVSRNet, deform_align
from vsrealbasicvsr.models.iconvsr_net import keyframes, refill_frames

NETWORKS = {"iconvsr_small": IconVSRNet, "basicvsrpp_small": BasicVSRPlusPlusNet}
# Max abs difference to the golden output on the CPU in fp32. BasicVSR++'s is above 1e-5 at a
# few pixels: a literal transcription of MMagic's forward gives our output bit for bit, and fp32
# rounding alone (torch's thread count, its kernels) moves it as far; the golden itself is 1.7e-5
# from the same network in float64 (tests/data/README.md). A wrong offset layout moves it 2.6e-2.
TOLERANCE = {"iconvsr_small": 1e-5, "basicvsrpp_small": 2e-5}


@pytest.fixture(scope="module", params=list(NETWORKS))
def golden(request):
    """(name, network with the golden weights loaded strictly, input, output)."""
    name = request.param
    data = np.load(GOLDEN_DIR / f"{name}.npz")
    checkpoint = torch.load(GOLDEN_DIR / f"{name}.pth", map_location="cpu", weights_only=True)
    state = {key.removeprefix("generator."): value for key, value in checkpoint["state_dict"].items()}
    network = NETWORKS[name](**ast.literal_eval(str(data["config"])))
    network.load_state_dict(state, strict=True)
    return name, network.eval(), torch.from_numpy(data["input"]), torch.from_numpy(data["output"])


def test_matches_the_reference_implementation_and_leaves_its_input_alone(golden):
    name, network, lqs, expected = golden
    before = lqs.clone()
    with torch.no_grad():
        output = network(lqs)
    difference = (output - expected).abs()
    print(f"{name}: max abs difference {difference.max():.3g}, mean {difference.mean():.3g}")
    assert torch.equal(lqs, before)
    assert output.shape == expected.shape
    assert difference.max() <= TOLERANCE[name]
    assert difference.mean() <= 1e-6


def test_the_golden_catches_offsets_read_as_dx_dy(golden, monkeypatch):
    """With (dx, dy) pairs instead of mmcv's (dy, dx) the output leaves the golden."""
    name, network, lqs, expected = golden
    correct = deform_align.deform_conv2d

    def swapped(x, offset, *args, **kwargs):
        b, _, h, w = offset.shape
        return correct(x, offset.view(b, -1, 2, h, w).flip(2).reshape(offset.shape), *args, **kwargs)

    monkeypatch.setattr(deform_align, "deform_conv2d", swapped)
    with torch.no_grad():
        difference = (network(lqs) - expected).abs().max().item()
    print(f"{name} with swapped offsets: max abs difference {difference:.3g}")
    assert difference > 1e-3


def test_second_order_alignment_moves_by_the_flow_as_dy_dx():
    """Zero residues and a flow of (dx, dy) = (0, 1): each tap samples one row down, so the
    centre tap of an identity kernel gives the features shifted up by a row (times the mask's
    sigmoid(0) = 0.5)."""
    align = deform_align.SecondOrderDeformableAlignment(2, 1, 3, padding=1, deform_groups=2)
    with torch.no_grad():
        align.weight.zero_()
        align.weight[0, 0, 1, 1] = 1.0  # the centre tap of the first input channel
        align.bias.zero_()
        features = torch.arange(6 * 7, dtype=torch.float32).view(1, 1, 6, 7)
        x = torch.cat([features, torch.zeros_like(features)], dim=1)
        flow = torch.zeros(1, 2, 6, 7)
        flow[:, 1] = 1.0  # one pixel down
        out = align(x, torch.zeros(1, 3, 6, 7), flow, torch.zeros_like(flow))
    assert torch.allclose(out[0, 0, :-1], 0.5 * features[0, 0, 1:])
    assert torch.equal(out[0, 0, -1], torch.zeros(7))  # below the frame: zeros


def test_keyframes_and_edvr_frames_are_mmeditings():
    assert keyframes(12, 5) == [0, 5, 10, 11]
    assert keyframes(11, 5) == [0, 5, 10]
    # MMEditing pads with frames [4, 3] before and [-4, -5] after (padding 2), [6, 5, 4] and
    # [-5, -6, -7] (padding 3)
    assert refill_frames(0, 10, 2) == [4, 3, 0, 1, 2]
    assert refill_frames(9, 10, 2) == [7, 8, 9, 6, 5]
    assert refill_frames(1, 10, 3) == [5, 4, 0, 1, 2, 3, 4]
    assert refill_frames(9, 10, 3) == [6, 7, 8, 9, 5, 4, 3]
    # shorter than MMEditing takes: clamped into the sequence
    assert refill_frames(0, 2, 2) == [1, 1, 0, 1, 0]
    assert refill_frames(0, 1, 2) == [0, 0, 0, 0, 0]


@pytest.fixture(scope="module")
def tiny_networks():
    torch.manual_seed(0)
    return {
        "iconvsr": IconVSRNet(mid_channels=4, num_blocks=1).eval(),
        "basicvsrpp": BasicVSRPlusPlusNet(mid_channels=8, num_blocks=1).eval(),
        "basicvsrpp-x1": BasicVSRPlusPlusNet(mid_channels=8, num_blocks=1, is_low_res_input=False).eval(),
    }


@pytest.mark.parametrize(
    "name,shape,scale",
    [
        ("iconvsr", (1, 3, 3, 18, 21), 4),  # shorter than EDVR's 5 frames, not a multiple of 4
        ("iconvsr", (1, 1, 3, 2, 3), 4),  # too small to reflect
        ("basicvsrpp", (1, 3, 3, 18, 21), 4),
        ("basicvsrpp", (1, 1, 3, 8, 8), 4),
        ("basicvsrpp-x1", (1, 2, 3, 30, 41), 1),
    ],
)
def test_any_size_and_length_streams_what_forward_gives(tiny_networks, name, shape, scale):
    network = tiny_networks[name]
    lqs = torch.rand(shape)
    before = lqs.clone()
    with torch.no_grad():
        stacked = network(lqs)
        streamed = list(network.stream(lqs))
        batched = list(network.stream(lqs, batch_frames=1))
        offloaded = list(network.stream(lqs, feature_device="cpu"))
    n, t, c, h, w = shape
    assert network.scale == scale
    assert torch.equal(lqs, before)
    assert stacked.shape == (n, t, c, scale * h, scale * w)
    assert all(torch.equal(stacked[:, i], streamed[i]) for i in range(t))
    assert all(torch.equal(stacked[:, i], offloaded[i]) for i in range(t))
    # frame by frame through the steps that need no recurrence: the same up to rounding
    assert all((stacked[:, i] - batched[i]).abs().max() <= 1e-5 for i in range(t))


def test_keyframe_stride_is_a_run_time_choice(tiny_networks):
    network = tiny_networks["iconvsr"]
    lqs = torch.rand(1, 4, 3, 16, 16)  # keyframes 0, 3 against 0, 2, 3
    with torch.no_grad():
        every_fifth = network(lqs)
        network.keyframe_stride = 2
        try:
            every_second = network(lqs)
        finally:
            network.keyframe_stride = 5
    assert (every_fifth - every_second).abs().max() > 1e-4


@pytest.mark.parametrize("name", ["iconvsr", "basicvsrpp"])
def test_mirror_extended_sequences_skip_the_forward_flows(tiny_networks, name):
    half = torch.rand(1, 2, 3, 32, 32)
    palindrome = torch.cat([half, half.flip(1)], dim=1)
    network = tiny_networks[name]
    calls = []
    hook = network.spynet.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            shortcut = network(palindrome)
            assert len(calls) == 1
            network.is_mirror_extended = lambda lqs: False
            explicit = network(palindrome)
    finally:
        hook.remove()
        del network.is_mirror_extended
    assert (shortcut - explicit).abs().max() <= 1e-5


# BasicSR's names of IconVSR's modules (basicsr/archs/basicvsr_arch.py, edvr_arch.py): plain
# convolutions where MMEditing has ConvModules, and a few other names.
BASICSR_NAMES = [
    ("backward_resblocks.", "backward_trunk."),
    ("forward_resblocks.", "forward_trunk."),
    ("upsample1.upsample_conv.", "upconv1."),
    ("upsample2.upsample_conv.", "upconv2."),
    ("edvr.pcd_alignment.", "edvr.pcd_align."),
    ("edvr.feat_l2_conv1.conv.", "edvr.conv_l2_1."),
    ("edvr.feat_l2_conv2.conv.", "edvr.conv_l2_2."),
    ("edvr.feat_l3_conv1.conv.", "edvr.conv_l3_1."),
    ("edvr.feat_l3_conv2.conv.", "edvr.conv_l3_2."),
]


def basicsr_name(key):
    for ours, theirs in BASICSR_NAMES:
        if key.startswith(ours):
            key = theirs + key[len(ours) :]
    spynet = re.match(r"(spynet\.basic_module\.\d+\.basic_module\.)(\d+)\.conv\.(\w+)$", key)
    if spynet:  # BasicSR's SPyNet: a plain Sequential, ReLUs at the odd indices
        return f"{spynet[1]}{2 * int(spynet[2])}.{spynet[3]}"
    if key.startswith("edvr.") and ".conv." in key and "dcn" not in key:
        return key.replace(".conv.", ".")
    return key


def test_the_loader_knows_each_architecture_from_its_keys_and_shapes(tmp_path):
    from vsrealbasicvsr.weights.checkpoints import load_model, load_state_dict

    icon = load_model(GOLDEN_DIR / "iconvsr_small.pth", keyframe_stride=3)
    assert isinstance(icon, IconVSRNet) and not icon.training
    assert (icon.mid_channels, len(icon.backward_resblocks.main[2]), icon.padding, icon.keyframe_stride) == (
        64,
        2,
        2,
        3,
    )
    plus = load_model(GOLDEN_DIR / "basicvsrpp_small.pth")
    assert isinstance(plus, BasicVSRPlusPlusNet)
    assert (plus.mid_channels, len(plus.backbone["backward_1"].main[2]), plus.scale) == (16, 2, 4)

    torch.manual_seed(0)
    x1 = BasicVSRPlusPlusNet(mid_channels=16, num_blocks=3, is_low_res_input=False)
    torch.save(x1.state_dict(), tmp_path / "x1.pth")
    loaded = load_model(tmp_path / "x1.pth")
    assert (loaded.is_low_res_input, loaded.scale, len(loaded.backbone["forward_2"].main[2])) == (False, 1, 3)

    # IconVSR in BasicSR's layout: the same tensors under MMEditing's names
    state = load_state_dict(GOLDEN_DIR / "iconvsr_small.pth")
    torch.save({"params": {basicsr_name(key): value for key, value in state.items()}}, tmp_path / "basicsr.pth")
    assert sorted(load_state_dict(tmp_path / "basicsr.pth")) == sorted(state)
    assert isinstance(load_model(tmp_path / "basicsr.pth"), IconVSRNet)
