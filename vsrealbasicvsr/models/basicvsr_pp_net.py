"""BasicVSR++ (Chan et al., "BasicVSR++: Improving Video Super-Resolution with Enhanced
Propagation and Alignment", CVPR 2022): second-order grid propagation over four branches
(backward, forward, backward, forward), each aligned by flow-guided deformable convolution."""

from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .basicvsr_net import MIN_SIZE, SCALE, NeighbourFlows, check_sequence, pad_to_min_size
from .blocks import PixelShufflePack, ResidualBlocksWithInputConv
from .deform_align import SecondOrderDeformableAlignment
from .flow_warp import flow_warp
from .spynet import SPyNet
from .steps import Steps

# the propagation branches in the order they run; each takes the earlier ones' features
BRANCHES = ("backward_1", "forward_1", "backward_2", "forward_2")
FEATURE_EXTRACTION_BLOCKS = 5
RECONSTRUCTION_BLOCKS = 5
DEFORM_GROUPS = 16


def pad_to_size(lqs, multiple, min_size):
    """Pad (n, t, c, h, w) at the bottom and right by edge replication to multiples of
    `multiple` of at least `min_size`."""
    n, t, c, h, w = lqs.shape
    pad_h = max(min_size, h + -h % multiple) - h
    pad_w = max(min_size, w + -w % multiple) - w
    if pad_h == 0 and pad_w == 0:
        return lqs
    padded = F.pad(lqs.reshape(n * t, c, h, w), (0, pad_w, 0, pad_h), mode="replicate")
    return padded.reshape(n, t, c, h + pad_h, w + pad_w)


class BasicVSRPlusPlusNet(NeighbourFlows, nn.Module):
    """BasicVSR++: x4 video super-resolution, or restoration at the input's size.

    Args:
        mid_channels (int): Channels of the propagated features. Default: 64.
        num_blocks (int): Residual blocks in each propagation branch. Default: 7.
        max_residue_magnitude (float): Bound of the deformable offsets' residues around the
            flows. Default: 10.
        is_low_res_input (bool): True: x4 super-resolution. False: the output has the input's
            size (deblurring, denoising, decompression); the features and flows are computed at
            a quarter of the size. Default: True.

    Input (n, t, 3, h, w) RGB in [0, 1]; output (n, t, 3, s*h, s*w) with s = `scale` (4, or 1
    when not `is_low_res_input`), not clamped. Differences from MMEditing's network, which give
    the same output where both work: the input tensor is never modified; frames that MMEditing
    refuses (x4: smaller than 64 px; x1: smaller than 256 px or not a multiple of 4) are padded
    at the bottom and right by edge replication and the output is cropped; outputs can be taken
    one frame at a time from `stream`; features are kept on `feature_device` when asked, not
    from a fixed sequence length.
    """

    # progress per item of a step's batch: per frame, a flow pair each way, feature extraction,
    # and an alignment and a trunk in each branch, and the reconstruction
    STEP_WORK: ClassVar[dict[str, float]] = (
        {"extract": 1, "flow": 0.5}
        | {f"align_{branch}": 1 for branch in BRANCHES}
        | {f"backbone_{branch}": 1 for branch in BRANCHES}
        | {"reconstruct": 1}
    )

    def __init__(self, mid_channels=64, num_blocks=7, max_residue_magnitude=10, is_low_res_input=True):
        super().__init__()
        self.mid_channels = mid_channels
        self.is_low_res_input = is_low_res_input
        self.scale = SCALE if is_low_res_input else 1

        # alignment: optical flow between neighbouring (low-resolution) frames
        self.spynet = SPyNet()

        # features of each frame; at a quarter of the size for full-size input
        if is_low_res_input:
            self.feat_extract = ResidualBlocksWithInputConv(3, mid_channels, FEATURE_EXTRACTION_BLOCKS)
        else:
            self.feat_extract = nn.Sequential(
                nn.Conv2d(3, mid_channels, 3, 2, 1),
                nn.LeakyReLU(negative_slope=0.1, inplace=True),
                nn.Conv2d(mid_channels, mid_channels, 3, 2, 1),
                nn.LeakyReLU(negative_slope=0.1, inplace=True),
                ResidualBlocksWithInputConv(mid_channels, mid_channels, FEATURE_EXTRACTION_BLOCKS),
            )

        # propagation: four branches, branch i fed the frame's features, the i earlier
        # branches' and its own aligned features
        self.deform_align = nn.ModuleDict()
        self.backbone = nn.ModuleDict()
        for i, branch in enumerate(BRANCHES):
            self.deform_align[branch] = SecondOrderDeformableAlignment(
                2 * mid_channels,
                mid_channels,
                3,
                padding=1,
                deform_groups=DEFORM_GROUPS,
                max_residue_magnitude=max_residue_magnitude,
            )
            self.backbone[branch] = ResidualBlocksWithInputConv((2 + i) * mid_channels, mid_channels, num_blocks)

        # reconstruction from the frame's features and all four branches', upsampled x4 and
        # added to a bilinear x4 of the frame (x1: to the frame)
        self.reconstruction = ResidualBlocksWithInputConv(5 * mid_channels, mid_channels, RECONSTRUCTION_BLOCKS)
        self.upsample1 = PixelShufflePack(mid_channels, mid_channels, 2, upsample_kernel=3)
        self.upsample2 = PixelShufflePack(mid_channels, 64, 2, upsample_kernel=3)
        self.conv_hr = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv_last = nn.Conv2d(64, 3, 3, 1, 1)
        self.img_upsample = nn.Upsample(scale_factor=SCALE, mode="bilinear", align_corners=False)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    def steps(self):
        """The network's own modules as the `Steps` that `stream` runs."""
        return Steps(
            {"extract": self.feat_extract, "flow": self.spynet}
            | {f"align_{branch}": self.deform_align[branch] for branch in BRANCHES}
            | {f"backbone_{branch}": self.backbone[branch] for branch in BRANCHES}
            | {"reconstruct": self.reconstruct}
        )

    def reconstruct(self, lq, spatial, backward_1, forward_1, backward_2, forward_2):
        """One output frame, (n, 3, s*h, s*w), from the frame and its features of every branch."""
        hr = self.reconstruction(torch.cat([spatial, backward_1, forward_1, backward_2, forward_2], dim=1))
        hr = self.lrelu(self.upsample1(hr))
        hr = self.lrelu(self.upsample2(hr))
        hr = self.lrelu(self.conv_hr(hr))
        hr = self.conv_last(hr)
        return hr + (self.img_upsample(lq) if self.is_low_res_input else lq)

    def _pad(self, lqs):
        if self.is_low_res_input:
            return pad_to_min_size(lqs)
        # features at a quarter of the size, SPyNet's frames at least MIN_SIZE there
        return pad_to_size(lqs, 4, 4 * MIN_SIZE)

    def extract_features(self, lqs, batch_frames, steps):
        """Each frame's features, (n, mid, h', w'), in time order, `batch_frames` at a time."""
        n, t, c, h, w = lqs.shape
        step = batch_frames or t
        for start in range(0, t, step):
            chunk = lqs[:, start : start + step]
            feats = steps.extract(chunk.reshape(-1, c, h, w))
            feats = feats.view(n, chunk.shape[1], *feats.shape[1:])
            yield from feats.unbind(1)

    def propagate(self, branch, feats, flows, steps):
        """One branch over the sequence: yields (index, features (n, mid, h, w)) for each frame
        in the branch's time order, as soon as they are computed, on the flows' device.

        Args:
            branch (str): One of BRANCHES.
            feats (dict[str, list[Tensor]]): "spatial" and the earlier branches' features, each
                a list in time order (on any device).
            flows (Tensor): (n, t-1, 2, h, w); for a backward branch, flows[:, i] from frame i to
                i+1; for a forward branch, from frame i+1 to i.
            steps (Steps): The steps that run.
        """
        t, device = len(feats["spatial"]), flows.device
        backward = branch.startswith("backward")
        align, backbone = steps[f"align_{branch}"], steps[f"backbone_{branch}"]
        earlier = [name for name in feats if name not in ("spatial", branch)]
        feat_prop = prop_n2 = None  # the branch's features one and two frames back
        for i, idx in enumerate(range(t - 1, -1, -1) if backward else range(t)):
            feat_current = feats["spatial"][idx].to(device)
            if i == 0:  # the branch's first frame has nothing to align
                feat_prop = feat_current.new_zeros(feat_current.shape)
            else:
                flow_n1 = flows[:, idx if backward else idx - 1]  # to the frame one back
                cond_n1 = flow_warp(feat_prop, flow_n1.permute(0, 2, 3, 1))
                if i > 1:  # second order: the frame two back, its flow composed through the first
                    flow_n2 = flows[:, idx + 1 if backward else idx - 2]
                    flow_n2 = flow_n1 + flow_warp(flow_n2, flow_n1.permute(0, 2, 3, 1))
                    cond_n2 = flow_warp(prop_n2, flow_n2.permute(0, 2, 3, 1))
                    feat_n2 = prop_n2
                else:
                    feat_n2, flow_n2, cond_n2 = (torch.zeros_like(x) for x in (feat_prop, flow_n1, cond_n1))
                cond = torch.cat([cond_n1, feat_current, cond_n2], dim=1)
                prop_n2 = feat_prop
                feat_prop = align(torch.cat([feat_prop, feat_n2], dim=1), cond, flow_n1, flow_n2)
            inputs = [feat_current, *(feats[name][idx].to(device) for name in earlier), feat_prop]
            feat_prop = feat_prop + backbone(torch.cat(inputs, dim=1))
            yield idx, feat_prop

    def stream(self, lqs, feature_device=None, batch_frames=None, steps=None):
        """Yield the output frames (n, 3, s*h, s*w) in time order, each as soon as the last
        branch (forward in time) reaches it.

        Args:
            lqs (Tensor): Input sequence, (n, t, 3, h, w), RGB in [0, 1]. Not modified.
            feature_device (torch.device | str | None): Where the features of the frames and of
                the first three branches wait for the later branches (e.g. "cpu" to keep a long
                window on a small GPU); each is moved back when used. Default: the input's device.
            batch_frames (int | None): Frames (and frame pairs given to SPyNet) computed at
                once in feature extraction and flows; None = the whole sequence, as MMEditing.
            steps (Steps | None): What runs the steps between the recurrences (a backend's);
                None = the network's own modules (`steps()`).
        """
        check_sequence(lqs)
        h, w = lqs.shape[-2:]
        lqs = self._pad(lqs)
        n, t, c, hp, wp = lqs.shape
        steps = steps or self.steps()

        def keep(feat):
            return feat if feature_device is None else feat.to(feature_device)

        feats = {"spatial": [keep(feat) for feat in self.extract_features(lqs, batch_frames, steps)]}
        if self.is_low_res_input:
            lqs_flow = lqs
        else:  # flows at the features' quarter size
            lqs_flow = F.interpolate(lqs.reshape(-1, c, hp, wp), scale_factor=0.25, mode="bicubic")
            lqs_flow = lqs_flow.view(n, t, c, hp // 4, wp // 4)
        flows_forward, flows_backward = self.compute_flows(lqs_flow, batch_frames, steps)
        if flows_forward is None:  # mirror-extended: the forward flows are the backward ones reversed
            flows_forward = flows_backward.flip(1)

        for branch in BRANCHES[:-1]:
            flows = flows_backward if branch.startswith("backward") else flows_forward
            feats[branch] = [None] * t
            for idx, feat in self.propagate(branch, feats, flows, steps):
                feats[branch][idx] = keep(feat)

        # the last branch runs forward in time: each frame is reconstructed as soon as it is reached
        for idx, feat in self.propagate(BRANCHES[-1], feats, flows_forward, steps):
            earlier = [feats[name][idx].to(feat.device) for name in feats]
            for name in feats:
                feats[name][idx] = None  # free them as soon as they have been used
            out = steps.reconstruct(lqs[:, idx], *earlier, feat)
            yield out[:, :, : self.scale * h, : self.scale * w]

    def forward(self, lqs, batch_frames=None):
        """(n, t, 3, h, w) in [0, 1] -> (n, t, 3, s*h, s*w); `batch_frames` as in `stream`."""
        return torch.stack(list(self.stream(lqs, batch_frames=batch_frames)), dim=1)
