"""Channel importance, and the function-preserving permutation that puts each group in importance order.

A channel's importance is the sum, over every layer of its group, of that layer's normalised vote: the L1
norm of the channel's filter (producers, depthwise filters), of its outgoing weights (consumers) and the
magnitude of its BatchNorm (or other per-channel) scale. Each layer's votes are divided by their mean so no
single layer dominates. Permuting a group's channels identically in all of its layers leaves the network's
function unchanged, and afterwards "the first c channels" are the c most important ones.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import nn

from .trace import ChannelGraph, Layout


def _positions(layout: Layout, sizes: Mapping[int, int], group: int) -> list[torch.Tensor]:
    """For each time ``group`` occurs in ``layout``: a ``[size, inner]`` tensor of its positions."""
    out, offset = [], 0
    for seg in layout.segs:
        n = sizes[seg.space]
        if seg.space == group:
            base = (torch.arange(n) + offset) * layout.inner
            out.append(base[:, None] + torch.arange(layout.inner)[None, :])
        offset += n
    return out


def _normalised(v: torch.Tensor) -> torch.Tensor:
    v = v.detach().double()
    return v / (v.mean() + 1e-12)


@torch.no_grad()
def channel_importance(graph: ChannelGraph, layers: Mapping[str, nn.Module]) -> dict[int, torch.Tensor]:
    """Importance score of every channel of every searchable group (group index -> scores)."""
    sizes = {i: g.width for i, g in enumerate(graph.groups)}
    scores: dict[int, torch.Tensor] = {}
    for gi, group in enumerate(graph.groups):
        if not group.searchable or group.routed:  # a routed group's channels are chosen, not reordered
            continue
        total = torch.zeros(group.width, dtype=torch.float64)
        for name, role in group.members:
            spec, layer = graph.layers[name], layers[name]
            weight = getattr(layer, spec.tensor("weight"))  # a functional layer's weight may have any name
            if role in ("out", "dw"):  # its filters at the positions of this group (a part of its output)
                row = weight.abs().flatten(1).sum(1)
                for pos in _positions(spec.out_layout, sizes, gi):
                    total += _normalised(row[pos].sum(1))
            elif role == "bn":  # a per-channel scale may be shaped (C, 1, 1): one value per channel all the same
                per_channel = weight.abs().reshape(weight.shape[0], -1).sum(1)
                for pos in _positions(spec.out_layout, sizes, gi):
                    total += _normalised(per_channel[pos].sum(1))
            elif role == "in":
                col = weight.abs().transpose(0, 1).flatten(1).sum(1)
                for pos in _positions(spec.in_layout, sizes, gi):
                    total += _normalised(col[pos].sum(1))
        scores[gi] = total
    return scores


def importance_order(scores: Mapping[int, torch.Tensor], multiples: Optional[Mapping[int, int]] = None,
                     narrow: frozenset = frozenset()) -> dict[int, torch.Tensor]:
    """Most important first; ties keep their stored order.

    A group feeding a grouped conv (``multiples[g]`` channels per conv group) is reordered in whole blocks of
    that many channels, by their summed importance: a grouped conv's channels cannot leave their group. A group
    in ``narrow`` keeps every block (each narrows): its channels are ordered inside each block instead.
    """
    out = {}
    for g, s in scores.items():
        q = (multiples or {}).get(g, 1)
        if q > 1 and g in narrow:
            within = torch.argsort(-s.reshape(-1, q), dim=1, stable=True)
            out[g] = (within + torch.arange(0, s.numel(), q)[:, None]).reshape(-1)
        elif q > 1:
            blocks = torch.argsort(-s.reshape(-1, q).sum(1), stable=True)
            out[g] = (blocks[:, None] * q + torch.arange(q)[None, :]).reshape(-1)
        else:
            out[g] = torch.argsort(-s, stable=True)
    return out


@torch.no_grad()
def routed_votes(graph: ChannelGraph, layers: Mapping[str, nn.Module], gi: int) -> list[tuple[tuple, torch.Tensor]]:
    """The importance votes of a routed group's layers (see :mod:`slimnas.trace.shuffle`), the same votes as
    :func:`channel_importance`'s, per position of each layer's routed layout: ``(route, votes)`` pairs."""
    out = []
    for name, role in graph.groups[gi].members:
        spec, layer = graph.layers[name], layers[name]
        weight = getattr(layer, spec.tensor("weight"))
        if role in ("out", "dw"):
            out.append((spec.out_layout.route, _normalised(weight.abs().flatten(1).sum(1))))
        elif role == "bn":
            out.append((spec.out_layout.route, _normalised(weight.abs().reshape(weight.shape[0], -1).sum(1))))
        elif role == "in":
            out.append((spec.in_layout.route, _normalised(weight.abs().transpose(0, 1).flatten(1).sum(1))))
    return out
