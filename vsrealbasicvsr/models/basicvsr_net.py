"""BasicVSR (Chan et al., "BasicVSR: The Search for Essential Components in Video
Super-Resolution and Beyond", CVPR 2021): SPyNet alignment, bidirectional recurrent propagation,
x4 pixel-shuffle reconstruction."""

from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import PixelShufflePack, ResidualBlocksWithInputConv
from .flow_warp import flow_warp
from .spynet import SPyNet
from .steps import Steps

SCALE = 4
# The network was designed and trained for frames of at least 64x64 (SPyNet's coarsest level is
# 1/32 of the frame); smaller frames are padded up to this size and the output is cropped.
MIN_SIZE = 64


def pad_to_min_size(lqs, min_size=MIN_SIZE):
    """Pad (n, t, c, h, w) at the bottom and right by edge replication to at least min_size.

    Replication rather than reflection: it works for frames of any size, even 1 px.
    """
    n, t, c, h, w = lqs.shape
    pad_h, pad_w = max(0, min_size - h), max(0, min_size - w)
    if pad_h == 0 and pad_w == 0:
        return lqs
    padded = F.pad(lqs.reshape(n * t, c, h, w), (0, pad_w, 0, pad_h), mode="replicate")
    return padded.reshape(n, t, c, h + pad_h, w + pad_w)


def check_sequence(lqs):
    """Raise ValueError unless lqs is a floating-point (n, t, 3, h, w) tensor with frames."""
    if lqs.dim() != 5 or lqs.shape[2] != 3:
        raise ValueError(f"expected an (n, t, 3, h, w) RGB sequence, got a tensor of shape {tuple(lqs.shape)}")
    if min(lqs.shape) == 0:
        raise ValueError(f"expected a non-empty sequence, got a tensor of shape {tuple(lqs.shape)}")
    if not lqs.is_floating_point():
        raise ValueError(f"expected a floating-point tensor in [0, 1], got {lqs.dtype}")


class NeighbourFlows:
    """SPyNet's flows between neighbouring frames, for the networks that propagate both ways in
    time (BasicVSR, IconVSR, BasicVSR++); the network has `spynet` and `steps()` with a `flow`."""

    @staticmethod
    def is_mirror_extended(lqs):
        """True when the sequence reads the same backwards (frame i equals frame t-1-i)."""
        if lqs.shape[1] % 2:
            return False
        first, second = torch.chunk(lqs, 2, dim=1)
        # exact equality, as MMEditing's zero-norm test of the difference
        return torch.equal(first, second.flip(1))

    def compute_flows(self, lqs, batch_frames=None, steps=None):
        """Flows between neighbours, (n, t-1, 2, h, w) each.

        Args:
            lqs (Tensor): The sequence, (n, t, 3, h, w).
            batch_frames (int | None): Frame pairs given to SPyNet at once; None = all of them
                (as MMEditing). Flows need no recurrence, so smaller batches change only the
                peak memory (SPyNet's pyramid for every pair at once grows with t).
            steps (Steps | None): What computes the flows; None = `self.steps()`.

        Returns:
            (flows_forward, flows_backward): ``flows_backward[:, i]`` goes from frame i to
            frame i+1 (used by backward-time propagation); ``flows_forward[:, i]`` from frame
            i+1 to frame i. For a mirror-extended sequence the forward flows are the backward
            flows reversed, so they are not computed and ``flows_forward`` is None.
        """
        flow = (steps or self.steps()).flow
        flows_backward = self._spynet_pairs(lqs, batch_frames, reverse=False, flow=flow)
        if self.is_mirror_extended(lqs):
            return None, flows_backward
        return self._spynet_pairs(lqs, batch_frames, reverse=True, flow=flow), flows_backward

    def _spynet_pairs(self, lqs, batch_frames, reverse, flow):
        """SPyNet over the pairs (i, i+1) (reverse: (i+1, i)), batch_frames pairs at a time."""
        n, t, c, h, w = lqs.shape
        # SPyNet may be kept in float32 while the rest runs in fp16/bf16 (its pyramid of
        # residues is not safe in half precision): cast at its boundary
        spynet_dtype = next(self.spynet.parameters()).dtype
        step = batch_frames or max(1, t - 1)
        chunks = []
        for start in range(0, t - 1, step):
            end = min(t - 1, start + step)
            earlier = lqs[:, start:end].reshape(-1, c, h, w).to(spynet_dtype)
            later = lqs[:, start + 1 : end + 1].reshape(-1, c, h, w).to(spynet_dtype)
            ref, supp = (later, earlier) if reverse else (earlier, later)
            chunks.append(flow(ref, supp).view(n, end - start, 2, h, w).to(lqs.dtype))
        if not chunks:  # a single frame has no neighbours
            return lqs.new_zeros(n, 0, 2, h, w)
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=1)


class BasicVSRNet(NeighbourFlows, nn.Module):
    """BasicVSR: x4 video super-resolution.

    Args:
        mid_channels (int): Channels of the propagated features. Default: 64.
        num_blocks (int): Residual blocks in each propagation branch. Default: 30.

    Input (n, t, 3, h, w) RGB in [0, 1]; output (n, t, 3, 4h, 4w), not clamped. Differences
    from MMEditing's network, which give the same output where both work: the input tensor is
    never modified; frames smaller than 64 px in either dimension (which MMEditing refuses) are
    padded at the bottom and right by edge replication to 64 px, and the output is cropped to
    exactly 4x the input size; outputs can be taken one frame at a time from `stream`.
    """

    scale = SCALE
    # progress per item of a step's batch (frames; flows: frame pairs, a half for each direction)
    STEP_WORK: ClassVar[dict[str, float]] = {"flow": 0.5, "backward_trunk": 1, "forward_trunk": 1, "reconstruct": 1}

    def __init__(self, mid_channels=64, num_blocks=30):
        super().__init__()
        self.mid_channels = mid_channels

        # alignment: optical flow between neighbouring frames
        self.spynet = SPyNet()

        # propagation: backward-time and forward-time branches, each fed the frame and the
        # warped features of its neighbour
        self.backward_resblocks = ResidualBlocksWithInputConv(mid_channels + 3, mid_channels, num_blocks)
        self.forward_resblocks = ResidualBlocksWithInputConv(mid_channels + 3, mid_channels, num_blocks)

        # reconstruction: fuse both branches, upsample x4, add a bilinear x4 of the input frame
        self.fusion = nn.Conv2d(mid_channels * 2, mid_channels, 1, 1, 0, bias=True)
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
                "backward_trunk": self.backward_resblocks,
                "forward_trunk": self.forward_resblocks,
                "reconstruct": self.reconstruct,
            }
        )

    def propagate_backward(self, lqs, flows_backward, feature_device=None, steps=None):
        """Backward-time propagation, last frame first; `steps` as in `compute_flows`.

        Returns:
            list[Tensor]: the features of every frame in time order, (n, mid_channels, h, w)
            each, stored on ``feature_device`` (default: the input's device).
        """
        n, t, _, h, w = lqs.shape
        trunk = (steps or self.steps()).backward_trunk
        features = [None] * t
        feat_prop = lqs.new_zeros(n, self.mid_channels, h, w)
        for i in range(t - 1, -1, -1):
            if i < t - 1:  # the last frame has no successor to align
                feat_prop = flow_warp(feat_prop, flows_backward[:, i].permute(0, 2, 3, 1))
            feat_prop = trunk(torch.cat([lqs[:, i], feat_prop], dim=1))
            features[i] = feat_prop if feature_device is None else feat_prop.to(feature_device)
        return features

    def reconstruct(self, lq, feat_backward, feat_forward):
        """One output frame, (n, 3, 4h, 4w), from both branches' features and the input frame."""
        out = self.lrelu(self.fusion(torch.cat([feat_backward, feat_forward], dim=1)))
        out = self.lrelu(self.upsample1(out))
        out = self.lrelu(self.upsample2(out))
        out = self.lrelu(self.conv_hr(out))
        out = self.conv_last(out)
        return out + self.img_upsample(lq)

    def stream(self, lqs, feature_device=None, batch_frames=None, steps=None):
        """Yield the output frames (n, 3, 4h, 4w) in time order, each as soon as the
        forward-time propagation reaches it.

        Args:
            lqs (Tensor): Input sequence, (n, t, 3, h, w), RGB in [0, 1]. Not modified.
            feature_device (torch.device | str | None): Where the backward-propagation features
                wait for the forward pass (e.g. "cpu" to keep a long window on a small GPU);
                each is moved back one frame at a time. Default: the input's device.
            batch_frames (int | None): Frames computed at once in the steps that need no
                recurrence (SPyNet here, also cleaning in RealBasicVSR); None = the whole
                sequence, as MMEditing. With a small batch, the peak memory grows with t only
                by what propagation keeps per frame.
            steps (Steps | None): What runs the steps between the recurrences (a backend's);
                None = the network's own modules (`steps()`).
        """
        check_sequence(lqs)
        h, w = lqs.shape[-2:]
        lqs = pad_to_min_size(lqs)
        t = lqs.shape[1]
        steps = steps or self.steps()

        flows_forward, flows_backward = self.compute_flows(lqs, batch_frames, steps)
        features_backward = self.propagate_backward(lqs, flows_backward, feature_device, steps)

        feat_prop = None
        for i in range(t):
            lq = lqs[:, i]
            if i == 0:  # the first frame has no predecessor to align
                feat_prop = lq.new_zeros(lq.shape[0], self.mid_channels, *lq.shape[-2:])
            else:
                flow = flows_forward[:, i - 1] if flows_forward is not None else flows_backward[:, -i]
                feat_prop = flow_warp(feat_prop, flow.permute(0, 2, 3, 1))
            feat_prop = steps.forward_trunk(torch.cat([lq, feat_prop], dim=1))
            feat_backward = features_backward[i].to(lq.device)
            features_backward[i] = None  # free it as soon as it has been used
            out = steps.reconstruct(lq, feat_backward, feat_prop)
            yield out[:, :, : SCALE * h, : SCALE * w]

    def forward(self, lqs, batch_frames=None):
        """(n, t, 3, h, w) in [0, 1] -> (n, t, 3, 4h, 4w); `batch_frames` as in `stream`."""
        return torch.stack(list(self.stream(lqs, batch_frames=batch_frames)), dim=1)
