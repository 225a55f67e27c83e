"""The steps of the networks: the parts with no recurrence inside them.

The networks' `stream` runs the recurrence (the time loops, warping the features by the flows,
SPyNet's and cleaning's batching) and calls a `Steps` for everything else. `network.steps()`
gives the network's own torch modules; a backend (`vsrealbasicvsr.backends`) gives callables
that compute the same on another runtime, so there is one network definition and one loop.
"""

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Steps:
    """Callables on torch tensors; b is any batch size, mid the network's `mid_channels`."""

    flow: Callable[[Tensor, Tensor], Tensor]  # SPyNet: ref, supp (b, 3, h, w) -> (b, 2, h, w)
    backward_trunk: Callable[[Tensor], Tensor]  # frame and warped features (b, 3 + mid, h, w) -> (b, mid, h, w)
    forward_trunk: Callable[[Tensor], Tensor]  # as backward_trunk
    # lq (b, 3, h, w), backward and forward features (b, mid, h, w) -> (b, 3, 4h, 4w)
    reconstruct: Callable[[Tensor, Tensor, Tensor], Tensor]
    clean: Callable[[Tensor], Tensor] | None = None  # RealBasicVSR: (b, 3, h, w) -> residue (b, 3, h, w)
