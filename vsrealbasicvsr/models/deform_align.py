"""Modulated deformable convolution (DCNv2, Zhu et al., CVPR 2019) and the two alignment modules
built on it: EDVR's `ModulatedDCNPack` (IconVSR's information refill) and BasicVSR++'s
`SecondOrderDeformableAlignment`.

The convolution is torchvision's `deform_conv2d`, which takes the layout of mmcv's
`modulated_deform_conv2d` (under which the official weights were trained): for each deformable
group and each of the kernel's taps an offset pair (dy, dx), row first, and one mask value per
tap after a sigmoid. Parameter names are mmcv's (`weight`, `bias`, `conv_offset`).
"""

import math

import torch
import torch.nn as nn


def deform_conv2d(*args, **kwargs):
    """torchvision's `deform_conv2d`, imported on the first call rather than with this module:
    importing torchvision takes longer than importing torch, and only IconVSR and BasicVSR++
    use it, while every process that loads any model imports this module."""
    from torchvision.ops import deform_conv2d as torchvision_deform_conv2d

    return torchvision_deform_conv2d(*args, **kwargs)


def split_offsets_and_mask(out):
    """conv_offset's output (b, 3 * g * k * k, h, w) -> offsets (b, 2 * g * k * k, h, w), mask.

    The first two thirds are the offsets, the last third the mask before its sigmoid, as mmcv
    reads them."""
    o1, o2, mask = torch.chunk(out, 3, dim=1)
    return torch.cat((o1, o2), dim=1), torch.sigmoid(mask)


class ModulatedDeformConv2d(nn.Module):
    """The weights of a modulated deformable convolution (stride 1, `padding` on each side).

    Args:
        in_channels (int): Channels of the input.
        out_channels (int): Channels of the output.
        kernel_size (int): Square kernel size. Default: 3.
        padding (int): Zero padding on each side. Default: 1.
        deform_groups (int): Groups of input channels that share one set of offsets. Default: 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, padding=1, deform_groups=1):
        super().__init__()
        self.padding = padding
        self.deform_groups = deform_groups
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # mmcv's initialisation: uniform in +-1/sqrt(fan-in)
        bound = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        nn.init.uniform_(self.weight, -bound, bound)

    def deform(self, x, offset, mask):
        """x (b, in, h, w) sampled at the kernel taps moved by offset, weighted by mask."""
        return deform_conv2d(x, offset, self.weight, self.bias, padding=self.padding, mask=mask)


class ModulatedDCNPack(ModulatedDeformConv2d):
    """EDVR's deformable convolution whose offsets and mask come from another feature map.

    Args: as `ModulatedDeformConv2d`.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, padding=1, deform_groups=1):
        super().__init__(in_channels, out_channels, kernel_size, padding, deform_groups)
        taps = kernel_size * kernel_size
        self.conv_offset = nn.Conv2d(in_channels, deform_groups * 3 * taps, kernel_size, 1, padding)
        # zero offsets and a mask of 0.5 to start with: a plain convolution
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x, extra_feat):
        """x (b, in, h, w) aligned by offsets predicted from extra_feat (b, in, h, w)."""
        offset, mask = split_offsets_and_mask(self.conv_offset(extra_feat))
        return self.deform(x, offset, mask)


class SecondOrderDeformableAlignment(ModulatedDeformConv2d):
    """BasicVSR++'s flow-guided deformable alignment of the features one and two frames back.

    The offsets are residues (at most ``max_residue_magnitude`` pixels, a tanh) added to the
    optical flows: the flow gives the coarse displacement, the deformable convolution the rest.

    Args:
        in_channels (int): 2 * mid_channels (both earlier frames' features).
        out_channels (int): mid_channels.
        kernel_size (int): Default: 3.
        padding (int): Default: 1.
        deform_groups (int): Default: 16 (the first half for the frame one back, the second
            half for the frame two back).
        max_residue_magnitude (float): Bound of the offset residues. Default: 10.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, padding=1, deform_groups=16, max_residue_magnitude=10):
        super().__init__(in_channels, out_channels, kernel_size, padding, deform_groups)
        self.max_residue_magnitude = max_residue_magnitude
        taps = kernel_size * kernel_size
        # condition: both warped earlier features, the current one, and both flows
        self.conv_offset = nn.Sequential(
            nn.Conv2d(3 * out_channels + 4, out_channels, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            nn.Conv2d(out_channels, 3 * taps * deform_groups, 3, 1, 1),
        )
        nn.init.zeros_(self.conv_offset[-1].weight)
        nn.init.zeros_(self.conv_offset[-1].bias)

    def forward(self, x, extra_feat, flow_1, flow_2):
        """Align x = [features 1 back, 2 back] (b, 2 * mid, h, w).

        Args:
            x (Tensor): (b, 2 * mid, h, w), both earlier frames' features, not yet warped.
            extra_feat (Tensor): (b, 3 * mid, h, w), the condition: both earlier features
                warped by the flows, and the current frame's features.
            flow_1, flow_2 (Tensor): (b, 2, h, w) flows (dx, dy) to the frames 1 and 2 back.

        Returns:
            Tensor: (b, mid, h, w).
        """
        out = self.conv_offset(torch.cat([extra_feat, flow_1, flow_2], dim=1))
        residues, mask = split_offsets_and_mask(out)
        residues = self.max_residue_magnitude * torch.tanh(residues)
        residue_1, residue_2 = torch.chunk(residues, 2, dim=1)
        # offsets are (dy, dx) pairs: the flows' (dx, dy) reversed, repeated for every tap and group
        offset_1 = residue_1 + flow_1.flip(1).repeat(1, residue_1.size(1) // 2, 1, 1)
        offset_2 = residue_2 + flow_2.flip(1).repeat(1, residue_2.size(1) // 2, 1, 1)
        return self.deform(x, torch.cat([offset_1, offset_2], dim=1), mask)
