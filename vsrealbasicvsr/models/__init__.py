"""Plain-PyTorch networks with MMEditing's parameter names, so the official checkpoints load
strictly."""

from .basicvsr_net import BasicVSRNet
from .basicvsr_pp_net import BasicVSRPlusPlusNet
from .flow_warp import flow_warp
from .iconvsr_net import IconVSRNet
from .real_basicvsr_net import RealBasicVSRNet
from .spynet import SPyNet
from .steps import Steps

__all__ = ["BasicVSRNet", "BasicVSRPlusPlusNet", "IconVSRNet", "RealBasicVSRNet", "SPyNet", "Steps", "flow_warp"]
