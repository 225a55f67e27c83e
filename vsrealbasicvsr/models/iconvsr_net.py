"""IconVSR (Chan et al., "BasicVSR: The Search for Essential Components in Video
Super-Resolution and Beyond", CVPR 2021): BasicVSR with information refill at keyframes (EDVR
features aligned by deformable convolutions) and coupled propagation (the forward branch takes
the backward branch's features)."""

from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import edvr
from .basicvsr_net import SCALE, NeighbourFlows, check_sequence
from .blocks import PixelShufflePack, ResidualBlocksWithInputConv
from .flow_warp import flow_warp
from .spynet import SPyNet
from .steps import Steps

# EDVR's pyramid halves the frame twice: frames are padded to a multiple of this
SIZE_MULTIPLE = 4


def pad_to_multiple(lqs, multiple=SIZE_MULTIPLE):
    """Pad (n, t, c, h, w) at the bottom and right to multiples of `multiple`, by reflection as
    MMEditing (by edge replication where a frame is too small to reflect)."""
    n, t, c, h, w = lqs.shape
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == 0 and pad_w == 0:
        return lqs
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    padded = F.pad(lqs.reshape(n * t, c, h, w), (0, pad_w, 0, pad_h), mode=mode)
    return padded.reshape(n, t, c, h + pad_h, w + pad_w)


def keyframes(t, stride):
    """The keyframes of a sequence of t frames: every `stride`-th from the first, and the last."""
    indices = list(range(0, t, stride))
    if indices[-1] != t - 1:
        indices.append(t - 1)
    return indices


def refill_frames(keyframe, t, padding):
    """The 2 * padding + 1 frame indices EDVR sees around `keyframe` of t frames.

    Beyond the sequence's ends MMEditing mirrors about the frame `padding` away from the end
    (for padding 2, frames -2, -1 are frames 4, 3 and frames t, t + 1 are frames t - 4, t - 5);
    in sequences shorter than 2 * padding + 1 frames, which MMEditing refuses, those indices
    are clamped into the sequence."""
    indices = []
    for position in range(keyframe - padding, keyframe + padding + 1):
        if position < 0:
            position = padding - position
        elif position >= t:
            position = t - 1 - padding - (position - t + 1)
        indices.append(min(max(position, 0), t - 1))
    return indices


class IconVSRNet(NeighbourFlows, nn.Module):
    """IconVSR: x4 video super-resolution.

    Args:
        mid_channels (int): Channels of the propagated features. Default: 64.
        num_blocks (int): Residual blocks in each propagation branch. Default: 30.
        keyframe_stride (int): Every keyframe_stride-th frame of the sequence, counted from its
            first, is a keyframe (the last frame is one too). Not fixed by the weights.
            Default: 5.
        padding (int): Frames on each side of a keyframe that EDVR aligns to it: 2 for the
            REDS weights, 3 for Vimeo-90K's. Default: 2.

    Input (n, t, 3, h, w) RGB in [0, 1]; output (n, t, 3, 4h, 4w), not clamped. Differences
    from MMEditing's network, which give the same output where both work: the input tensor is
    never modified; sequences shorter than 2 * padding + 1 frames are accepted (see
    `refill_frames`); frames too small to pad by reflection are padded by replication; outputs
    can be taken one frame at a time from `stream`.
    """

    scale = SCALE
    # progress per item of a step's batch; refill and fusion run at keyframes only
    STEP_WORK: ClassVar[dict[str, float]] = {
        "flow": 0.5,
        "refill": 1,
        "backward_fusion": 0,
        "forward_fusion": 0,
        "backward_trunk": 1,
        "forward_trunk": 1,
        "reconstruct": 1,
    }

    def __init__(self, mid_channels=64, num_blocks=30, keyframe_stride=5, padding=2):
        super().__init__()
        if not isinstance(keyframe_stride, int) or keyframe_stride < 1:
            raise ValueError(f"keyframe_stride must be a whole number >= 1, not {keyframe_stride!r}")
        self.mid_channels = mid_channels
        self.keyframe_stride = keyframe_stride
        self.padding = padding

        # alignment: optical flow between neighbouring frames
        self.spynet = SPyNet()

        # information refill: EDVR features of the keyframes, fused into both branches there
        self.edvr = edvr.EDVRFeatureExtractor(num_frames=2 * padding + 1, center_frame_idx=padding)
        # (MMEditing sizes these for 2 * mid_channels in: the same for its 64 channels)
        self.backward_fusion = nn.Conv2d(mid_channels + edvr.CHANNELS, mid_channels, 3, 1, 1, bias=True)
        self.forward_fusion = nn.Conv2d(mid_channels + edvr.CHANNELS, mid_channels, 3, 1, 1, bias=True)

        # propagation: the forward branch is coupled, fed the backward branch's features too
        self.backward_resblocks = ResidualBlocksWithInputConv(mid_channels + 3, mid_channels, num_blocks)
        self.forward_resblocks = ResidualBlocksWithInputConv(2 * mid_channels + 3, mid_channels, num_blocks)

        # reconstruction: upsample x4, add a bilinear x4 of the input frame
        self.upsample1 = PixelShufflePack(mid_channels, mid_channels, 2, upsample_kernel=3)
        self.upsample2 = PixelShufflePack(mid_channels, 64, 2, upsample_kernel=3)
        self.conv_hr = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv_last = nn.Conv2d(64, 3, 3, 1, 1)
        self.img_upsample = nn.Upsample(scale_factor=SCALE, mode="bilinear", align_corners=False)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    def steps(self):
        """The network's own modules as the `Steps` that `stream` runs."""
        return Steps(
            {
                "flow": self.spynet,
                "refill": self.edvr,
                "backward_fusion": self.backward_fusion,
                "forward_fusion": self.forward_fusion,
                "backward_trunk": self.backward_resblocks,
                "forward_trunk": self.forward_resblocks,
                "reconstruct": self.reconstruct,
            }
        )

    def reconstruct(self, lq, feat):
        """One output frame, (n, 3, 4h, 4w), from the forward branch's features and the frame."""
        out = self.lrelu(self.upsample1(feat))
        out = self.lrelu(self.upsample2(out))
        out = self.lrelu(self.conv_hr(out))
        out = self.conv_last(out)
        return out + self.img_upsample(lq)

    def refill_features(self, lqs, indices, steps):
        """EDVR's features of the keyframes `indices`, {index: (n, mid, h, w)}."""
        t = lqs.shape[1]
        return {i: steps.refill(lqs[:, refill_frames(i, t, self.padding)]) for i in indices}

    def stream(self, lqs, feature_device=None, batch_frames=None, steps=None):
        """Yield the output frames (n, 3, 4h, 4w) in time order, each as soon as the
        forward-time propagation reaches it.

        Args:
            lqs (Tensor): Input sequence, (n, t, 3, h, w), RGB in [0, 1]. Not modified.
            feature_device (torch.device | str | None): Where the backward-propagation features
                (and the keyframes' refill features) wait for the forward pass. Default: the
                input's device.
            batch_frames (int | None): Frame pairs given to SPyNet at once; None = all of them.
            steps (Steps | None): What runs the steps between the recurrences (a backend's);
                None = the network's own modules (`steps()`).
        """
        check_sequence(lqs)
        h, w = lqs.shape[-2:]
        lqs = pad_to_multiple(lqs)
        n, t = lqs.shape[:2]
        steps = steps or self.steps()
        key_indices = keyframes(t, self.keyframe_stride)

        flows_forward, flows_backward = self.compute_flows(lqs, batch_frames, steps)

        # backward-time propagation, keeping each frame's features and each keyframe's refill
        features_backward, refills = [None] * t, {}
        feat_prop = lqs.new_zeros(n, self.mid_channels, *lqs.shape[-2:])
        for i in range(t - 1, -1, -1):
            if i < t - 1:  # the last frame has no successor to align
                feat_prop = flow_warp(feat_prop, flows_backward[:, i].permute(0, 2, 3, 1))
            if i in key_indices:
                refills[i] = self.refill_features(lqs, [i], steps)[i]
                feat_prop = steps.backward_fusion(torch.cat([feat_prop, refills[i]], dim=1))
                if feature_device is not None:
                    refills[i] = refills[i].to(feature_device)
            feat_prop = steps.backward_trunk(torch.cat([lqs[:, i], feat_prop], dim=1))
            features_backward[i] = feat_prop if feature_device is None else feat_prop.to(feature_device)

        # forward-time propagation and reconstruction
        feat_prop = torch.zeros_like(feat_prop)
        for i in range(t):
            lq = lqs[:, i]
            if i > 0:  # the first frame has no predecessor to align
                flow = flows_forward[:, i - 1] if flows_forward is not None else flows_backward[:, -i]
                feat_prop = flow_warp(feat_prop, flow.permute(0, 2, 3, 1))
            if i in key_indices:
                feat_prop = steps.forward_fusion(torch.cat([feat_prop, refills.pop(i).to(lq.device)], dim=1))
            feat_backward = features_backward[i].to(lq.device)
            features_backward[i] = None  # free it as soon as it has been used
            feat_prop = steps.forward_trunk(torch.cat([lq, feat_backward, feat_prop], dim=1))
            out = steps.reconstruct(lq, feat_prop)
            yield out[:, :, : SCALE * h, : SCALE * w]

    def forward(self, lqs, batch_frames=None):
        """(n, t, 3, h, w) in [0, 1] -> (n, t, 3, 4h, 4w); `batch_frames` as in `stream`."""
        return torch.stack(list(self.stream(lqs, batch_frames=batch_frames)), dim=1)
