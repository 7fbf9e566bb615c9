"""How the channel dimension of one tensor is made of channel spaces.

Most feature maps carry one space along dim 1. A ``torch.cat`` along channels strings several spaces
together, and ``flatten`` after a spatial map repeats each channel ``inner`` times (its H*W pixels), which is
what a following ``nn.Linear`` sees. Every slicing and permutation of a weight dimension goes through
:meth:`Layout.index`, so concat and flatten need no special cases anywhere else.

A channel shuffle (ShuffleNet's ``view``/``transpose``/``view``) interleaves channels one by one, which no run
of segments describes. Such a tensor carries a *route* (:mod:`slimnas.trace.shuffle`): the recipe of cats,
shuffles and chunks that made it from its producers' outputs, which can be replayed at any width.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import torch

# What a group contributes to a layer's dimension: ``None`` means all of its channels in stored order,
# otherwise the stored channel positions to use, in order.
Selection = Optional[torch.Tensor]


@dataclass(frozen=True)
class Seg:
    """A run of one channel space inside a tensor's channel dimension."""

    space: int  # channel-space id (resolved to a group after tracing)
    size: int  # number of channels the space has in the traced (original) model


@dataclass(frozen=True)
class Layout:
    """The channel dimension of a tensor as segments of channel spaces, each channel repeated ``inner`` times."""

    segs: tuple[Seg, ...]
    inner: int = 1
    # A routed tensor (after a channel shuffle): the recipe that built it (see :mod:`slimnas.trace.shuffle`).
    # Its ``segs`` then only count channels (``size // c`` times its one group of ``c``), in no particular order.
    route: Optional[tuple] = None

    @property
    def size(self) -> int:
        return sum(s.size for s in self.segs) * self.inner

    def spaces(self) -> list[int]:
        return [s.space for s in self.segs]

    def index(self, sizes: Mapping[int, int], select: Callable[[int], Selection]) -> Selection:
        """Positions along this dimension of a weight whose spaces have ``sizes`` channels stored.

        ``select(space)`` gives the chosen stored positions of one space (or ``None`` for all of them).
        Returns ``None`` when the whole dimension is used in stored order (no slicing needed).
        """
        if self.route is not None:  # positions of a routed tensor come from its group's routing plan
            if all(select(seg.space) is None for seg in self.segs):
                return None
            raise ValueError("a routed layout (after a channel shuffle) is indexed by its routing plan")
        parts: list[torch.Tensor] = []
        offset = 0
        whole = True
        for seg in self.segs:
            n = sizes[seg.space]
            sel = select(seg.space)
            if sel is None:
                sel = torch.arange(n)
            else:
                whole = False
            parts.append(sel + offset)
            offset += n
        if whole:
            return None
        idx = torch.cat(parts) if len(parts) > 1 else parts[0]
        if self.inner > 1:
            idx = (idx[:, None] * self.inner + torch.arange(self.inner)[None, :]).reshape(-1)
        return idx

    def width(self, widths: Mapping[int, int]) -> int:
        """Size of the dimension when each space has ``widths[space]`` channels."""
        return sum(widths[s.space] for s in self.segs) * self.inner


def single(space: int, size: int) -> Layout:
    return Layout((Seg(space, size),))


def concat(layouts: Sequence[Layout]) -> Optional[Layout]:
    """Layout of ``torch.cat`` along channels, or ``None`` when the parts cannot be strung together."""
    if any(l.inner != 1 for l in layouts) or any(l.route is not None for l in layouts):
        return None
    return Layout(tuple(s for l in layouts for s in l.segs))
