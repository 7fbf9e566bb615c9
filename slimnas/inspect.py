"""``slimnas inspect``: the channel groups of a model as a table."""
from __future__ import annotations

import pandas as pd

from .cost import flops_attribution
from .supernet import Supernet


def describe(supernet: Supernet, members: int = 3) -> pd.DataFrame:
    """One row per channel group: name, member layers, checkpoint width, candidates, share of FLOPs."""
    graph = supernet.graph
    w = supernet.cost.default
    share = flops_attribution(supernet.cost, w, [g.searchable for g in graph.groups])
    rows = []
    for i, g in enumerate(graph.groups):
        layers = sorted({name for name, _ in g.members}, key=list(graph.layers).index)
        shown = ", ".join(layers[:members]) + (f" +{len(layers) - members}" if len(layers) > members else "")
        cands = supernet.space[g.name].choices if g.searchable else ()
        rows.append({
            "group": g.name,
            "layers": shown,
            "width": g.width,
            "candidates": " ".join(map(str, cands)) if cands else f"frozen: {g.frozen}",
            "flops_share": share[i],
        })
    rows.append({"group": "(fixed)", "layers": "", "width": None, "candidates": "not width-dependent",
                 "flops_share": share[-1]})
    return pd.DataFrame(rows)
