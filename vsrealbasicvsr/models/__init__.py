"""Plain-PyTorch networks with MMEditing's parameter names, so the official checkpoints load
strictly."""

from .basicvsr_net import BasicVSRNet
from .flow_warp import flow_warp
from .real_basicvsr_net import RealBasicVSRNet
from .spynet import SPyNet
from .steps import Steps

__all__ = ["BasicVSRNet", "RealBasicVSRNet", "SPyNet", "Steps", "flow_warp"]
