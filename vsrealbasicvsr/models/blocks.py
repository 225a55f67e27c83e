"""Building blocks shared by the networks: residual blocks and pixel-shuffle upsampling."""

import torch.nn as nn
import torch.nn.functional as F


class ResidualBlockNoBN(nn.Module):
    """Conv-ReLU-Conv with an identity shortcut and no batch normalisation (EDSR style).

    Args:
        mid_channels (int): Channels of the input and of both convolutions. Default: 64.
    """

    def __init__(self, mid_channels=64):
        super().__init__()
        self.conv1 = nn.Conv2d(mid_channels, mid_channels, 3, 1, 1, bias=True)
        self.conv2 = nn.Conv2d(mid_channels, mid_channels, 3, 1, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return x + self.conv2(self.relu(self.conv1(x)))


class ResidualBlocksWithInputConv(nn.Module):
    """A convolution that sets the channel count, then ``num_blocks`` residual blocks.

    Args:
        in_channels (int): Channels of the input.
        out_channels (int): Channels of the residual blocks and of the output. Default: 64.
        num_blocks (int): Number of residual blocks. Default: 30.
    """

    def __init__(self, in_channels, out_channels=64, num_blocks=30):
        super().__init__()
        # indices 0, 1, 2 are MMEditing's parameter names: main.0 (conv), main.2.<i> (blocks)
        self.main = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=True),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            nn.Sequential(*(ResidualBlockNoBN(out_channels) for _ in range(num_blocks))),
        )

    def forward(self, feat):
        """(n, in_channels, h, w) -> (n, out_channels, h, w)."""
        return self.main(feat)


class PixelShufflePack(nn.Module):
    """A convolution to ``out_channels * scale**2`` channels, then a pixel shuffle.

    Args:
        in_channels (int): Channels of the input.
        out_channels (int): Channels of the output.
        scale_factor (int): Upsampling factor.
        upsample_kernel (int): Kernel size of the convolution.
    """

    def __init__(self, in_channels, out_channels, scale_factor, upsample_kernel):
        super().__init__()
        self.scale_factor = scale_factor
        self.upsample_conv = nn.Conv2d(
            in_channels, out_channels * scale_factor * scale_factor, upsample_kernel, padding=(upsample_kernel - 1) // 2
        )

    def forward(self, x):
        """(n, in_channels, h, w) -> (n, out_channels, scale*h, scale*w)."""
        return F.pixel_shuffle(self.upsample_conv(x), self.scale_factor)


class ConvLeakyReLU(nn.Module):
    """A convolution, optionally followed by a leaky ReLU (slope 0.1); the attribute name `conv`
    matches mmcv's ConvModule, under which EDVR's weights were saved.

    Args:
        in_channels (int): Channels of the input.
        out_channels (int): Channels of the output.
        kernel_size (int): Square kernel size.
        stride (int): Default: 1.
        padding (int): Default: 0.
        activate (bool): Whether the leaky ReLU follows. Default: True.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, activate=True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=True)
        self.activate = nn.LeakyReLU(negative_slope=0.1, inplace=True) if activate else nn.Identity()

    def forward(self, x):
        return self.activate(self.conv(x))
