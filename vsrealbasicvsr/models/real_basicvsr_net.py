"""RealBasicVSR (Chan et al., "Investigating Tradeoffs in Real-World Video Super-Resolution",
CVPR 2022): an image-cleaning module in front of BasicVSR."""

from typing import ClassVar

import torch
import torch.nn as nn

from .basicvsr_net import SCALE, BasicVSRNet, check_sequence, pad_to_min_size
from .blocks import ResidualBlocksWithInputConv

# Cleaning passes at most; the paper found more passes stop helping (and start to over-smooth).
MAX_CLEANING_PASSES = 3


class RealBasicVSRNet(nn.Module):
    """RealBasicVSR: clean the degraded frames, then BasicVSR x4.

    Args:
        mid_channels (int): Channels of the intermediate features. Default: 64.
        num_propagation_blocks (int): Residual blocks in each BasicVSR propagation branch.
            Default: 20.
        num_cleaning_blocks (int): Residual blocks in the cleaning module. Default: 20.
        dynamic_refine_thres (float): Stop cleaning once the mean absolute residue, in 8-bit
            units, is below this. Default: 255 (one pass, as in the official release).
        is_sequential_cleaning (bool): Clean one frame at a time (less memory, slower).
            Default: False.

    Input (n, t, 3, h, w) RGB in [0, 1]; output (n, t, 3, 4h, 4w), not clamped. Differences
    from MMEditing's network: the input tensor is never modified (MMEditing's cleaning loop
    adds the residues to it in place); frames smaller than 64 px in either dimension are padded
    by edge replication to 64 px before cleaning (so the padding takes part in the cleaning
    loop's stopping test) and the output is cropped to exactly 4x the input size.
    """

    scale = SCALE
    STEP_WORK: ClassVar[dict[str, float]] = BasicVSRNet.STEP_WORK | {"clean": 1}

    def __init__(
        self,
        mid_channels=64,
        num_propagation_blocks=20,
        num_cleaning_blocks=20,
        dynamic_refine_thres=255,
        is_sequential_cleaning=False,
    ):
        super().__init__()
        self.mid_channels = mid_channels
        self.dynamic_refine_thres = dynamic_refine_thres / 255.0
        self.is_sequential_cleaning = is_sequential_cleaning

        # image cleaning: predicts a residue that removes the real-world degradations
        self.image_cleaning = nn.Sequential(
            ResidualBlocksWithInputConv(3, mid_channels, num_cleaning_blocks),
            nn.Conv2d(mid_channels, 3, 3, 1, 1, bias=True),
        )
        # super-resolution of the cleaned frames
        self.basicvsr = BasicVSRNet(mid_channels, num_propagation_blocks)

    def steps(self):
        """The network's own modules as the `Steps` that `stream` runs: BasicVSR's and cleaning."""
        return self.basicvsr.steps().replace(clean=self.image_cleaning)

    def clean(self, lqs, batch_frames=None, steps=None):
        """Add the cleaning module's residue to the frames, up to three times, stopping after
        the first pass whose mean absolute residue is below ``dynamic_refine_thres / 255``.

        Args:
            lqs (Tensor): Frames, (n, t, 3, h, w). Not modified.
            batch_frames (int | None): Frames cleaned at once; None = all of them (1 when
                ``is_sequential_cleaning``). Each pass still finishes every frame before the
                stopping test, which averages over the whole sequence as in MMEditing.
            steps (Steps | None): What runs the cleaning module; None = `self.steps()`.

        Returns:
            Tensor: The cleaned frames, a new (n, t, 3, h, w) tensor.
        """
        n, t, c, h, w = lqs.shape
        step = 1 if self.is_sequential_cleaning else (batch_frames or t)
        clean = (steps or self.steps()).clean
        for _ in range(MAX_CLEANING_PASSES):
            cleaned, residue_sum = [], 0
            for start in range(0, t, step):  # time -> batch, step frames at a time
                chunk = lqs[:, start : start + step]
                residues = clean(chunk.reshape(-1, c, h, w)).view(chunk.shape)
                cleaned.append(chunk + residues)
                residue_sum = residue_sum + torch.abs(residues).sum(dtype=torch.float64)
            lqs = cleaned[0] if len(cleaned) == 1 else torch.cat(cleaned, dim=1)
            if residue_sum / lqs.numel() < self.dynamic_refine_thres:
                break
        return lqs

    def stream(self, lqs, feature_device=None, batch_frames=None, steps=None):
        """Clean the frames, then yield the output frames (n, 3, 4h, 4w) in time order, each as
        soon as BasicVSR's forward-time propagation reaches it.

        Args:
            lqs (Tensor): Input sequence, (n, t, 3, h, w), RGB in [0, 1]. Not modified.
            feature_device (torch.device | str | None): Where the backward-propagation features
                wait; see `BasicVSRNet.stream`. Default: None (the input's device).
            batch_frames (int | None): Frames cleaned (and frame pairs given to SPyNet) at once;
                see `BasicVSRNet.stream`. Default: None (the whole sequence, as MMEditing).
            steps (Steps | None): What runs the steps between the recurrences (a backend's);
                None = the network's own modules (`steps()`).
        """
        check_sequence(lqs)
        h, w = lqs.shape[-2:]
        steps = steps or self.steps()
        cleaned = self.clean(pad_to_min_size(lqs), batch_frames, steps)
        for out in self.basicvsr.stream(cleaned, feature_device, batch_frames, steps):
            yield out[:, :, : SCALE * h, : SCALE * w]

    def forward(self, lqs, batch_frames=None):
        """(n, t, 3, h, w) in [0, 1] -> (n, t, 3, 4h, 4w); `batch_frames` as in `stream`."""
        return torch.stack(list(self.stream(lqs, batch_frames=batch_frames)), dim=1)
