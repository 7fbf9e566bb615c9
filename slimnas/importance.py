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


def _vote(graph: ChannelGraph, layers: Mapping[str, nn.Module], name: str, role: str) -> tuple[Layout, torch.Tensor]:
    """One layer's raw vote per position of the dimension ``role`` names, and that dimension's layout: the L1
    norm of its filters (out, dw), of its per-channel scale (bn; a scale may be shaped (C, 1, 1)) or of its
    outgoing weights (in)."""
    spec = graph.layers[name]
    weight = getattr(layers[name], spec.tensor("weight"))  # a functional layer's weight may have any name
    if role in ("out", "dw"):
        return spec.out_layout, weight.abs().flatten(1).sum(1)
    if role == "bn":
        return spec.out_layout, weight.abs().reshape(weight.shape[0], -1).sum(1)
    return spec.in_layout, weight.abs().transpose(0, 1).flatten(1).sum(1)


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
            layout, vote = _vote(graph, layers, name, role)
            for pos in _positions(layout, sizes, gi):  # each time the group occurs in that dimension
                total += _normalised(vote[pos].sum(1))
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
        layout, vote = _vote(graph, layers, name, role)
        out.append((layout.route, _normalised(vote)))
    return out
