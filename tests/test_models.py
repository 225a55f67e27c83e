"""The networks: parity with MMEditing's reference outputs, and what users rely on beyond it."""
import numpy as np
import pytest
import torch

from vsrealbasicvsr.checkpoints import load_model
from vsrealbasicvsr.models import BasicVSRNet, RealBasicVSRNet

from conftest import GOLDEN_DIR, TINY_CONFIG


@pytest.fixture(scope="module")
def golden():
    return np.load(GOLDEN_DIR / "realbasicvsr_tiny.npz")


@pytest.mark.parametrize("prefer_ema,key", [(True, "output_ema"), (False, "output_generator")])
def test_matches_the_reference_implementation(golden, prefer_ema, key):
    network = load_model(GOLDEN_DIR / "realbasicvsr_tiny.pth", prefer_ema=prefer_ema)
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
    lqs = torch.rand(1, 4, 3, 64, 72)
    before = lqs.clone()
    with torch.no_grad():
        stacked = tiny(lqs)
        streamed = list(tiny.stream(lqs))
        offloaded = list(tiny.stream(lqs, feature_device="cpu"))
    assert torch.equal(lqs, before)
    assert len(streamed) == 4
    assert all(torch.equal(stacked[:, i], streamed[i]) for i in range(4))
    assert all(torch.equal(a, b) for a, b in zip(streamed, offloaded))


@pytest.mark.parametrize("height,width", [(20, 36), (64, 8), (1, 1)])
def test_frames_smaller_than_64_give_exactly_four_times_the_size(tiny, height, width):
    with torch.no_grad():
        output = tiny(torch.rand(1, 2, 3, height, width))
    assert output.shape == (1, 2, 3, 4 * height, 4 * width)


def test_mirror_extended_shortcut_equals_computing_both_flows(tiny):
    half = torch.rand(1, 3, 3, 64, 64)
    palindrome = torch.cat([half, half.flip(1)], dim=1)
    basicvsr = tiny.basicvsr
    assert basicvsr.is_mirror_extended(palindrome)
    with torch.no_grad():
        flows_forward, flows_backward = basicvsr.compute_flows(palindrome)
        assert flows_forward is None
        n, t, c, h, w = palindrome.shape
        explicit = basicvsr.spynet(palindrome[:, 1:].reshape(-1, c, h, w),
                                   palindrome[:, :-1].reshape(-1, c, h, w)).view(n, t - 1, 2, h, w)
    assert torch.allclose(explicit, flows_backward.flip(1), atol=1e-5)


@pytest.mark.parametrize("threshold,passes", [(255, 1), (0, 3)])
def test_cleaning_stops_when_the_residue_is_small_and_after_three_passes(threshold, passes):
    torch.manual_seed(0)
    network = RealBasicVSRNet(**TINY_CONFIG, dynamic_refine_thres=threshold).eval()
    calls = []
    network.image_cleaning.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        network(torch.rand(1, 2, 3, 64, 64))
    assert len(calls) == passes


def test_sequential_cleaning_gives_the_batched_result(tiny):
    sequential = RealBasicVSRNet(**TINY_CONFIG, is_sequential_cleaning=True).eval()
    sequential.load_state_dict(tiny.state_dict())
    lqs = torch.rand(1, 3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(sequential.clean(lqs), tiny.clean(lqs), atol=1e-6)


def test_full_size_networks_have_mmediting_names():
    real = RealBasicVSRNet().state_dict()
    basic = BasicVSRNet().state_dict()
    assert len(basic) == 316 and len(real) == 320
    assert real["basicvsr.spynet.basic_module.5.basic_module.4.conv.weight"].shape == (2, 16, 7, 7)
    assert real["image_cleaning.0.main.2.19.conv2.weight"].shape == (64, 64, 3, 3)
    assert real["basicvsr.backward_resblocks.main.0.weight"].shape == (64, 67, 3, 3)
    assert basic["upsample2.upsample_conv.weight"].shape == (256, 64, 3, 3)
    assert "basicvsr.backward_resblocks.main.2.20.conv1.weight" not in real
