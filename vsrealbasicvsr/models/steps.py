"""The steps of the networks: the parts with no recurrence inside them.

Every network's `stream` runs its recurrence (the time loops, warping the features by the
flows, batching, RealBasicVSR's cleaning loop, IconVSR's keyframes, BasicVSR++'s branches) and
calls a `Steps` for everything else. `network.steps()` gives the network's own torch modules (or
methods); a backend (`vsrealbasicvsr.backends`) gives callables that compute the same on another
runtime, so there is one network definition and one loop per architecture.

What the steps are is the network's: each names its own (`network.steps()`'s keys) and says how
much of its work each is (`network.STEP_WORK`, for progress). A step takes and returns torch
tensors, the batch first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from torch import Tensor

Step = Callable[..., Tensor]


class Steps(Mapping[str, Step]):
    """A network's steps by name; also readable as attributes (`steps.flow`).

    Args:
        steps: name -> callable on torch tensors.
    """

    def __init__(self, steps: Mapping[str, Step]):
        self._steps = dict(steps)

    def __getitem__(self, name: str) -> Step:
        return self._steps[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def __getattr__(self, name: str) -> Step:
        try:
            return self.__dict__["_steps"][name]
        except KeyError:
            raise AttributeError(f"no step named {name!r} (the steps are {', '.join(self)})") from None

    def replace(self, **steps: Step) -> Steps:
        """These steps with some of them replaced (or added)."""
        return Steps(self._steps | steps)

    def __repr__(self) -> str:
        return f"Steps({', '.join(self)})"
