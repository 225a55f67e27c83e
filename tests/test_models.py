"""The networks: parity with MMEditing's reference outputs, and what users rely on beyond it."""

import ast

import numpy as np
import pytest
import torch
from conftest import GOLDEN_DIR, TINY_CONFIG

from vsrealbasicvsr.models import BasicVSRNet, RealBasicVSRNet, flow_warp


@pytest.fixture(scope="module")
def golden():
    return np.load(GOLDEN_DIR / "realbasicvsr_tiny.npz")


def golden_network(golden, prefix):
    """The golden checkpoint's ``prefix`` weights in a network built from its config, loaded
    strictly (the official loader is tested in test_checkpoints.py; this tests the names)."""
    checkpoint = torch.load(GOLDEN_DIR / "realbasicvsr_tiny.pth", map_location="cpu", weights_only=True)
    state_dict = {
        key[len(prefix) :]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)
    }
    network = RealBasicVSRNet(**ast.literal_eval(str(golden["config"])))
    network.load_state_dict(state_dict, strict=True)
    return network.eval()


@pytest.mark.parametrize("prefix,key", [("generator_ema.", "output_ema"), ("generator.", "output_generator")])
def test_matches_the_reference_implementation(golden, prefix, key):
    network = golden_network(golden, prefix)
    lqs = torch.from_numpy(golden["input"])
    with torch.no_grad():
        output = network(lqs)
    difference = (output - torch.from_numpy(golden[key])).abs().max().item()
    print(f"{key}: max abs difference {difference:.3g}")
    assert output.shape == (1, 5, 3, 256, 256)
    assert difference <= 1e-5


def test_ema_and_generator_weights_differ(golden):
    """The golden pair only catches a loader that picks the wrong weights if they differ."""
    assert np.abs(golden["output_ema"] - golden["output_generator"]).max() > 1e-3


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return RealBasicVSRNet(**TINY_CONFIG).eval()


def test_forward_leaves_its_input_alone_and_stream_equals_forward(tiny):
    lqs = torch.rand(1, 3, 3, 64, 72)
    before = lqs.clone()
    with torch.no_grad():
        stacked = tiny(lqs)
        streamed = list(tiny.stream(lqs))
        offloaded = list(tiny.stream(lqs, feature_device="cpu"))
    assert torch.equal(lqs, before)
    assert stacked.shape == (1, 3, 3, 256, 288)
    assert len(streamed) == 3
    assert all(torch.equal(stacked[:, i], streamed[i]) for i in range(3))
    assert all(torch.equal(a, b) for a, b in zip(streamed, offloaded, strict=True))


@pytest.mark.parametrize("batch_frames", [1, 2, 4])
def test_batches_of_frames_give_the_reference_output(golden, batch_frames):
    """Cleaning and SPyNet in batches of frames (the engine's memory saver) match the reference."""
    network = golden_network(golden, "generator_ema.")
    lqs = torch.from_numpy(golden["input"])
    with torch.no_grad():
        batched = torch.stack(list(network.stream(lqs, batch_frames=batch_frames)), dim=1)
    difference = (batched - torch.from_numpy(golden["output_ema"])).abs().max().item()
    print(f"batch_frames={batch_frames}: max abs difference {difference:.3g}")
    assert difference <= 1e-5


def test_batched_cleaning_keeps_the_stopping_test_over_the_whole_sequence(tiny):
    """The mean residue that stops the cleaning is taken over all frames, not per batch."""
    lqs = torch.rand(1, 5, 3, 32, 32)
    with torch.no_grad():
        residue = (tiny.clean(lqs) - lqs).abs().mean().item()
        passes = {}
        for threshold in (0, 255 * residue * 0.999, 255):  # three passes .. one pass
            tiny.dynamic_refine_thres = threshold / 255
            whole, batched = tiny.clean(lqs), tiny.clean(lqs, batch_frames=2)
            assert torch.allclose(whole, batched, atol=1e-6)
            passes[threshold] = whole
    tiny.dynamic_refine_thres = 1.0
    assert not torch.allclose(passes[0], passes[255])


def test_sequential_cleaning_leaves_its_input_alone(tiny):
    """MMEditing's sequential cleaning adds the residues to the input in place."""
    sequential = RealBasicVSRNet(**TINY_CONFIG, is_sequential_cleaning=True).eval()
    sequential.load_state_dict(tiny.state_dict())
    lqs = torch.rand(1, 3, 3, 32, 32)
    before = lqs.clone()
    with torch.no_grad():
        cleaned = sequential.clean(lqs)
        batched = tiny.clean(lqs)
    assert torch.equal(lqs, before)
    assert torch.allclose(cleaned, batched, atol=1e-6)
    assert not torch.allclose(cleaned, lqs)


@pytest.mark.parametrize("height,width", [(20, 36), (64, 8), (1, 1)])
def test_frames_smaller_than_64_give_exactly_four_times_the_size(tiny, height, width):
    with torch.no_grad():
        output = tiny(torch.rand(1, 2, 3, height, width))
    assert output.shape == (1, 2, 3, 4 * height, 4 * width)
    assert torch.isfinite(output).all()


def test_a_single_frame_works(tiny):
    with torch.no_grad():
        output = tiny(torch.rand(1, 1, 3, 64, 64))
    assert output.shape == (1, 1, 3, 256, 256)


@pytest.mark.parametrize(
    "shape,dtype,message",
    [
        ((3, 64, 64), torch.float32, "(n, t, 3, h, w)"),
        ((1, 2, 1, 64, 64), torch.float32, "(n, t, 3, h, w)"),
        ((1, 0, 3, 64, 64), torch.float32, "non-empty"),
        ((1, 2, 3, 64, 64), torch.uint8, "floating-point"),
    ],
)
def test_bad_input_is_a_value_error_that_says_what_is_wrong(tiny, shape, dtype, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tiny(torch.zeros(shape, dtype=dtype))


def test_mirror_extended_shortcut_equals_computing_both_flows(tiny, monkeypatch):
    half = torch.rand(1, 2, 3, 64, 64)
    palindrome = torch.cat([half, half.flip(1)], dim=1)
    basicvsr = tiny.basicvsr
    assert basicvsr.is_mirror_extended(palindrome)
    assert not basicvsr.is_mirror_extended(palindrome[:, 1:])  # odd length
    assert not basicvsr.is_mirror_extended(torch.cat([half, half], dim=1))

    spynet_calls = []
    hook = basicvsr.spynet.register_forward_hook(lambda *_: spynet_calls.append(1))
    try:
        with torch.no_grad():
            shortcut = basicvsr(palindrome)
            assert len(spynet_calls) == 1  # the forward flows were not computed
            monkeypatch.setattr(basicvsr, "is_mirror_extended", lambda lqs: False)
            explicit = basicvsr(palindrome)
            assert len(spynet_calls) == 3
    finally:
        hook.remove()
    assert (shortcut - explicit).abs().max() <= 1e-6


@pytest.mark.parametrize("threshold,passes", [(255, 1), (0, 3)])
def test_cleaning_stops_when_the_residue_is_small_and_after_three_passes(threshold, passes):
    torch.manual_seed(0)
    network = RealBasicVSRNet(**TINY_CONFIG, dynamic_refine_thres=threshold).eval()
    residues = []
    network.image_cleaning.register_forward_hook(lambda _m, _i, out: residues.append(out))
    lqs = torch.rand(1, 2, 3, 32, 32)
    with torch.no_grad():
        cleaned = network.clean(lqs)
    assert len(residues) == passes
    assert torch.allclose(cleaned, lqs + sum(residues).view_as(lqs), atol=1e-6)


def test_reduced_precision_with_a_float32_spynet(tiny):
    """The engine runs fp16/bf16 with SPyNet kept in float32: flows and warps cast at the
    boundaries and give the features' dtype."""
    basicvsr = BasicVSRNet(mid_channels=4, num_blocks=1).eval()
    basicvsr.load_state_dict(tiny.basicvsr.state_dict())
    lqs = torch.rand(1, 2, 3, 64, 64)
    with torch.no_grad():
        flows_forward, flows_backward = basicvsr.compute_flows(lqs)
        basicvsr.half()
        basicvsr.spynet.float()
        half_forward, half_backward = basicvsr.compute_flows(lqs.half())
        features = torch.rand(1, 4, 64, 64)
        warped = flow_warp(features, flows_backward[:, 0].permute(0, 2, 3, 1))
        half_warped = flow_warp(features.half(), half_backward[:, 0].permute(0, 2, 3, 1))
    assert half_forward.dtype == half_backward.dtype == half_warped.dtype == torch.float16
    assert (half_backward.float() - flows_backward).abs().max() < 0.05
    assert (half_forward.float() - flows_forward).abs().max() < 0.05
    assert (half_warped.float() - warped).abs().max() < 0.01


def test_flow_warp_moves_pixels_by_the_flow():
    image = torch.arange(4 * 5, dtype=torch.float32).view(1, 1, 4, 5)
    flow = torch.zeros(1, 4, 5, 2)
    flow[..., 0] = 1.0  # sample one pixel to the right
    warped = flow_warp(image, flow)
    assert torch.allclose(warped[..., :-1], image[..., 1:])
    assert torch.equal(warped[..., -1], torch.zeros(1, 1, 4))  # outside the frame: zeros
    border = flow_warp(image, flow, padding_mode="border")
    assert torch.allclose(border[..., -1], image[..., -1])


def test_full_size_networks_have_mmediting_names():
    real = RealBasicVSRNet().state_dict()
    basic = BasicVSRNet().state_dict()
    # SPyNet: 6 levels x 5 convolutions x (weight, bias) + mean, std = 62; BasicVSR: 2 x (conv +
    # 30 blocks of 2 convolutions) x 2 + fusion, 2 upsamples, conv_hr, conv_last = 254
    assert len(basic) == 62 + 254
    # RealBasicVSR: 20 blocks per branch, and the cleaning module (conv, 20 blocks, conv)
    assert len(real) == 62 + (2 * (1 + 2 * 20) + 5) * 2 + (1 + 2 * 20 + 1) * 2
    assert real["basicvsr.spynet.basic_module.5.basic_module.4.conv.weight"].shape == (2, 16, 7, 7)
    assert real["basicvsr.spynet.basic_module.0.basic_module.0.conv.weight"].shape == (32, 8, 7, 7)
    assert real["basicvsr.spynet.mean"].shape == (1, 3, 1, 1)
    assert real["image_cleaning.0.main.0.weight"].shape == (64, 3, 3, 3)
    assert real["image_cleaning.0.main.2.19.conv2.weight"].shape == (64, 64, 3, 3)
    assert real["image_cleaning.1.weight"].shape == (3, 64, 3, 3)
    assert real["basicvsr.backward_resblocks.main.0.weight"].shape == (64, 67, 3, 3)
    assert real["basicvsr.forward_resblocks.main.2.19.conv1.bias"].shape == (64,)
    assert real["basicvsr.fusion.weight"].shape == (64, 128, 1, 1)
    assert basic["upsample1.upsample_conv.weight"].shape == (256, 64, 3, 3)
    assert basic["upsample2.upsample_conv.weight"].shape == (256, 64, 3, 3)
    assert basic["conv_hr.weight"].shape == (64, 64, 3, 3)
    assert basic["conv_last.weight"].shape == (3, 64, 3, 3)
    assert "basicvsr.backward_resblocks.main.2.20.conv1.weight" not in real
    assert "forward_resblocks.main.2.29.conv2.weight" in basic
