"""Backward warping of an image or feature map by an optical flow."""

import torch
import torch.nn.functional as F


def flow_warp(x, flow, interpolation="bilinear", padding_mode="zeros", align_corners=True):
    """Sample ``x`` at the positions ``pixel + flow`` (backward warping).

    The sampling grid is always built and used in float32: in fp16 or bf16 the normalised
    coordinates of a frame a few hundred pixels wide lose a sizeable fraction of a pixel.

    Args:
        x (Tensor): Image or features, (n, c, h, w).
        flow (Tensor): Flow in pixels, (n, h, w, 2), x displacement first.
        interpolation (str): Interpolation of `F.grid_sample`. Default: "bilinear".
        padding_mode (str): What lies outside the frame: "zeros" (BasicVSR's propagation) or
            "border" (SPyNet's pyramid). Default: "zeros".
        align_corners (bool): As in `F.grid_sample`. Default: True (MMEditing's choice).

    Returns:
        Tensor: Warped ``x``, (n, c, h, w), in ``x``'s dtype.
    """
    if x.shape[-2:] != flow.shape[1:3]:
        raise ValueError(
            f"flow_warp: spatial sizes differ: x is {tuple(x.shape[-2:])}, flow is {tuple(flow.shape[1:3])}"
        )
    _, _, h, w = x.shape
    grid_y, grid_x = torch.meshgrid(
        torch.arange(0, h, device=x.device), torch.arange(0, w, device=x.device), indexing="ij"
    )
    grid = torch.stack((grid_x, grid_y), 2).to(torch.float32)  # (h, w, 2)
    grid_flow = grid + flow.to(torch.float32)
    # scale the pixel positions to [-1, 1]
    grid_flow_x = 2.0 * grid_flow[:, :, :, 0] / max(w - 1, 1) - 1.0
    grid_flow_y = 2.0 * grid_flow[:, :, :, 1] / max(h - 1, 1) - 1.0
    grid_flow = torch.stack((grid_flow_x, grid_flow_y), dim=3)
    output = F.grid_sample(
        x.to(torch.float32), grid_flow, mode=interpolation, padding_mode=padding_mode, align_corners=align_corners
    )
    return output.to(x.dtype)
