"""``slimnas inspect``: the channel groups of a model as a table."""
from __future__ import annotations

import pandas as pd

from .cost import flops_attribution
from .supernet import Supernet


def describe(supernet: Supernet, members: int = 3) -> pd.DataFrame:
    """One row per channel group: name, member layers, checkpoint width, candidates, share of FLOPs; then one row per
    stage of skippable blocks (elastic depth): its blocks, the depths it may keep, the share of FLOPs they hold; then
    one row per elastic kernel: its sizes."""
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
    full = supernet.space.original()
    total = supernet.flops(full)
    for st in supernet.space.stages:
        without = supernet.flops(full.replace(depth={st.name: 0}))
        shown = ", ".join(st.blocks[:members]) + (f" +{len(st.blocks) - members}" if len(st.blocks) > members else "")
        rows.append({"group": f"(depth) {st.name}", "layers": shown, "width": None,
                     "candidates": "blocks kept: " + " ".join(map(str, st.choices)),
                     "flops_share": (total - without) / max(total, 1e-12)})
    for k in supernet.space.kernels:
        rows.append({"group": f"(kernel) {k.name}", "layers": k.name, "width": None,
                     "candidates": f"kernel sizes: {' '.join(map(str, k.choices))} (checkpoint {k.kernel})",
                     "flops_share": None})
    return pd.DataFrame(rows)
