"""SPyNet optical flow (Ranjan and Black, "Optical Flow Estimation using a Spatial Pyramid
Network", CVPR 2017), in the variant BasicVSR uses: six pyramid levels, no batch normalisation."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .flow_warp import flow_warp

PYRAMID_LEVELS = 6


class _Conv(nn.Module):
    """A 7x7 convolution, optionally followed by ReLU; the attribute name `conv` matches mmcv's
    ConvModule, under which the official weights were saved."""

    def __init__(self, in_channels, out_channels, relu=True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=7, stride=1, padding=3)
        self.activate = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x):
        return self.activate(self.conv(x))


class SPyNetBasicModule(nn.Module):
    """One pyramid level: predicts a flow residue from (reference, warped support, flow)."""

    def __init__(self):
        super().__init__()
        self.basic_module = nn.Sequential(
            _Conv(8, 32), _Conv(32, 64), _Conv(64, 32), _Conv(32, 16), _Conv(16, 2, relu=False)
        )

    def forward(self, tensor_input):
        """(b, 8, h, w): reference (3), warped support (3), upsampled flow (2) -> (b, 2, h, w)."""
        return self.basic_module(tensor_input)


class SPyNet(nn.Module):
    """Coarse-to-fine optical flow over a six-level image pyramid.

    Images are normalised with the ImageNet mean and std (SPyNet was trained on such input) and
    resized to a multiple of 32, so that five halvings give whole-pixel levels.
    """

    def __init__(self):
        super().__init__()
        self.basic_module = nn.ModuleList(SPyNetBasicModule() for _ in range(PYRAMID_LEVELS))
        # saved in the official checkpoints, so they stay persistent buffers
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def compute_flow(self, ref, supp):
        """Flow from ``ref`` to ``supp``, both (n, 3, h, w) with h and w multiples of 32."""
        n, _, h, w = ref.shape
        ref = [(ref - self.mean) / self.std]
        supp = [(supp - self.mean) / self.std]
        for _ in range(PYRAMID_LEVELS - 1):
            ref.append(F.avg_pool2d(ref[-1], kernel_size=2, stride=2, count_include_pad=False))
            supp.append(F.avg_pool2d(supp[-1], kernel_size=2, stride=2, count_include_pad=False))
        ref, supp = ref[::-1], supp[::-1]  # coarsest level first

        flow = ref[0].new_zeros(n, 2, h // 32, w // 32)
        for level in range(PYRAMID_LEVELS):
            if level == 0:
                flow_up = flow
            else:  # twice the size, so twice the displacement
                flow_up = F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=True) * 2.0
            warped_supp = flow_warp(supp[level], flow_up.permute(0, 2, 3, 1), padding_mode="border")
            flow = flow_up + self.basic_module[level](torch.cat([ref[level], warped_supp, flow_up], 1))
        return flow

    def forward(self, ref, supp):
        """Flow from ``ref`` to ``supp``.

        Args:
            ref (Tensor): Reference images, (n, 3, h, w), RGB in [0, 1].
            supp (Tensor): Supporting images, (n, 3, h, w).

        Returns:
            Tensor: Flow in pixels, (n, 2, h, w), x displacement first.
        """
        h, w = ref.shape[2:4]
        h_up, w_up = -(-h // 32) * 32, -(-w // 32) * 32
        ref = F.interpolate(ref, size=(h_up, w_up), mode="bilinear", align_corners=False)
        supp = F.interpolate(supp, size=(h_up, w_up), mode="bilinear", align_corners=False)
        flow = F.interpolate(self.compute_flow(ref, supp), size=(h, w), mode="bilinear", align_corners=False)
        # back to the original pixel scale of each axis
        flow[:, 0, :, :] *= float(w) / float(w_up)
        flow[:, 1, :, :] *= float(h) / float(h_up)
        return flow
