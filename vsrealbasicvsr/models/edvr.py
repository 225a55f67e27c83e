"""EDVR's feature extractor (Wang et al., "EDVR: Video Restoration with Enhanced Deformable
Convolutional Networks", CVPRW 2019), as IconVSR uses it for information refill: features of a
few frames around a keyframe, aligned to it by pyramid, cascading and deformable convolutions
(PCD) and fused with temporal and spatial attention (TSA). EDVR's reconstruction is not part of
it."""

import torch
import torch.nn as nn

from .blocks import ConvLeakyReLU, ResidualBlockNoBN
from .deform_align import ModulatedDCNPack

# EDVR-M's sizes, which IconVSR's released weights use (MMEditing does not make them arguments)
CHANNELS = 64
DEFORM_GROUPS = 8
EXTRACTION_BLOCKS = 5
PYRAMID_LEVELS = 3  # L1 full size, L2 half, L3 quarter: the frame must be a multiple of 4


class PCDAlignment(nn.Module):
    """Aligns a neighbour's pyramid of features to the reference frame's, coarsest level first:
    each level's offsets are refined from the coarser level's, then one cascading deformable
    convolution at full size.

    Args:
        mid_channels (int): Channels of the features. Default: 64.
        deform_groups (int): Deformable groups. Default: 8.
    """

    def __init__(self, mid_channels=CHANNELS, deform_groups=DEFORM_GROUPS):
        super().__init__()
        self.offset_conv1 = nn.ModuleDict()
        self.offset_conv2 = nn.ModuleDict()
        self.offset_conv3 = nn.ModuleDict()
        self.dcn_pack = nn.ModuleDict()
        self.feat_conv = nn.ModuleDict()
        for i in range(PYRAMID_LEVELS, 0, -1):
            level = f"l{i}"
            self.offset_conv1[level] = ConvLeakyReLU(mid_channels * 2, mid_channels, 3, padding=1)
            if i == PYRAMID_LEVELS:  # the coarsest level has no coarser offsets to take in
                self.offset_conv2[level] = ConvLeakyReLU(mid_channels, mid_channels, 3, padding=1)
            else:
                self.offset_conv2[level] = ConvLeakyReLU(mid_channels * 2, mid_channels, 3, padding=1)
                self.offset_conv3[level] = ConvLeakyReLU(mid_channels, mid_channels, 3, padding=1)
            self.dcn_pack[level] = ModulatedDCNPack(mid_channels, mid_channels, 3, 1, deform_groups)
            if i < PYRAMID_LEVELS:  # fuse with the coarser level's aligned features; L1 stays linear
                self.feat_conv[level] = ConvLeakyReLU(mid_channels * 2, mid_channels, 3, padding=1, activate=i == 2)
        self.cas_offset_conv1 = ConvLeakyReLU(mid_channels * 2, mid_channels, 3, padding=1)
        self.cas_offset_conv2 = ConvLeakyReLU(mid_channels, mid_channels, 3, padding=1)
        self.cas_dcnpack = ModulatedDCNPack(mid_channels, mid_channels, 3, 1, deform_groups)
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    def forward(self, neighbor_feats, ref_feats):
        """Pyramids [L1, L2, L3] of (b, c, h / 2**level, w / 2**level) -> aligned (b, c, h, w)."""
        upsampled_offset = upsampled_feat = None
        for i in range(PYRAMID_LEVELS, 0, -1):
            level = f"l{i}"
            offset = self.offset_conv1[level](torch.cat([neighbor_feats[i - 1], ref_feats[i - 1]], dim=1))
            if i == PYRAMID_LEVELS:
                offset = self.offset_conv2[level](offset)
            else:
                offset = self.offset_conv2[level](torch.cat([offset, upsampled_offset], dim=1))
                offset = self.offset_conv3[level](offset)
            feat = self.dcn_pack[level](neighbor_feats[i - 1], offset)
            if i == PYRAMID_LEVELS:
                feat = self.lrelu(feat)
            else:
                feat = self.feat_conv[level](torch.cat([feat, upsampled_feat], dim=1))
            if i > 1:  # twice the size, so twice the displacement
                upsampled_offset = self.upsample(offset) * 2
                upsampled_feat = self.upsample(feat)
        offset = self.cas_offset_conv2(self.cas_offset_conv1(torch.cat([feat, ref_feats[0]], dim=1)))
        return self.lrelu(self.cas_dcnpack(feat, offset))


class TSAFusion(nn.Module):
    """Temporal and spatial attention fusion of the aligned features of `num_frames` frames.

    Args:
        mid_channels (int): Channels of the features. Default: 64.
        num_frames (int): Frames fused. Default: 5.
        center_frame_idx (int): The reference frame. Default: 2.
    """

    def __init__(self, mid_channels=CHANNELS, num_frames=5, center_frame_idx=2):
        super().__init__()
        self.center_frame_idx = center_frame_idx
        # temporal attention: each frame weighted by its embedding's correlation with the reference's
        self.temporal_attn1 = nn.Conv2d(mid_channels, mid_channels, 3, padding=1)
        self.temporal_attn2 = nn.Conv2d(mid_channels, mid_channels, 3, padding=1)
        self.feat_fusion = ConvLeakyReLU(num_frames * mid_channels, mid_channels, 1)
        # spatial attention over two more pyramid levels
        self.max_pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg_pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.spatial_attn1 = ConvLeakyReLU(num_frames * mid_channels, mid_channels, 1)
        self.spatial_attn2 = ConvLeakyReLU(mid_channels * 2, mid_channels, 1)
        self.spatial_attn3 = ConvLeakyReLU(mid_channels, mid_channels, 3, padding=1)
        self.spatial_attn4 = ConvLeakyReLU(mid_channels, mid_channels, 1)
        self.spatial_attn5 = nn.Conv2d(mid_channels, mid_channels, 3, padding=1)
        self.spatial_attn_l1 = ConvLeakyReLU(mid_channels, mid_channels, 1)
        self.spatial_attn_l2 = ConvLeakyReLU(mid_channels * 2, mid_channels, 3, padding=1)
        self.spatial_attn_l3 = ConvLeakyReLU(mid_channels, mid_channels, 3, padding=1)
        self.spatial_attn_add1 = ConvLeakyReLU(mid_channels, mid_channels, 1)
        self.spatial_attn_add2 = nn.Conv2d(mid_channels, mid_channels, 1)
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, aligned_feat):
        """(b, t, c, h, w) aligned features -> fused (b, c, h, w)."""
        b, t, c, h, w = aligned_feat.shape
        embedding_ref = self.temporal_attn1(aligned_feat[:, self.center_frame_idx])
        emb = self.temporal_attn2(aligned_feat.reshape(-1, c, h, w)).view(b, t, -1, h, w)
        corr = torch.stack([torch.sum(emb[:, i] * embedding_ref, 1) for i in range(t)], dim=1)  # (b, t, h, w)
        corr_prob = torch.sigmoid(corr).unsqueeze(2).expand(b, t, c, h, w).reshape(b, -1, h, w)
        aligned_feat = aligned_feat.reshape(b, -1, h, w) * corr_prob

        feat = self.feat_fusion(aligned_feat)

        attn = self.spatial_attn1(aligned_feat)
        attn = self.spatial_attn2(torch.cat([self.max_pool(attn), self.avg_pool(attn)], dim=1))
        attn_level = self.spatial_attn_l1(attn)
        attn_level = self.spatial_attn_l2(torch.cat([self.max_pool(attn_level), self.avg_pool(attn_level)], dim=1))
        attn_level = self.upsample(self.spatial_attn_l3(attn_level))
        attn = self.spatial_attn4(self.spatial_attn3(attn) + attn_level)
        attn = self.spatial_attn5(self.upsample(attn))
        attn_add = self.spatial_attn_add2(self.spatial_attn_add1(attn))
        # the sigmoid's 0.5 at initialisation times 2 starts the attention near 1
        return feat * torch.sigmoid(attn) * 2 + attn_add


class EDVRFeatureExtractor(nn.Module):
    """Features of the centre frame of `num_frames`, aligned and fused from its neighbours
    (EDVR-M up to its fusion).

    Args:
        num_frames (int): Frames in, the centre one the reference. Default: 5.
        center_frame_idx (int): Index of the centre frame. Default: 2.
    """

    def __init__(self, num_frames=5, center_frame_idx=2):
        super().__init__()
        self.center_frame_idx = center_frame_idx
        self.conv_first = nn.Conv2d(3, CHANNELS, 3, 1, 1)
        self.feature_extraction = nn.Sequential(*(ResidualBlockNoBN(CHANNELS) for _ in range(EXTRACTION_BLOCKS)))
        # the feature pyramid: L2 and L3 each at half the size of the level before
        self.feat_l2_conv1 = ConvLeakyReLU(CHANNELS, CHANNELS, 3, 2, 1)
        self.feat_l2_conv2 = ConvLeakyReLU(CHANNELS, CHANNELS, 3, 1, 1)
        self.feat_l3_conv1 = ConvLeakyReLU(CHANNELS, CHANNELS, 3, 2, 1)
        self.feat_l3_conv2 = ConvLeakyReLU(CHANNELS, CHANNELS, 3, 1, 1)
        self.pcd_alignment = PCDAlignment(CHANNELS, DEFORM_GROUPS)
        self.fusion = TSAFusion(CHANNELS, num_frames, center_frame_idx)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    def forward(self, x):
        """(b, t, 3, h, w) frames, h and w multiples of 4 -> (b, 64, h, w) features."""
        b, t, c, h, w = x.shape
        l1_feat = self.feature_extraction(self.lrelu(self.conv_first(x.reshape(-1, c, h, w))))
        l2_feat = self.feat_l2_conv2(self.feat_l2_conv1(l1_feat))
        l3_feat = self.feat_l3_conv2(self.feat_l3_conv1(l2_feat))
        pyramid = [
            l1_feat.view(b, t, -1, h, w),
            l2_feat.view(b, t, -1, h // 2, w // 2),
            l3_feat.view(b, t, -1, h // 4, w // 4),
        ]
        ref_feats = [level[:, self.center_frame_idx] for level in pyramid]
        aligned = [self.pcd_alignment([level[:, i] for level in pyramid], ref_feats) for i in range(t)]
        return self.fusion(torch.stack(aligned, dim=1))
