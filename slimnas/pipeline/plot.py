"""``pareto.png``: accuracy against latency for the original model, the uniform width ratios, the searched
front and the chosen subnet. Latencies measured on the device are drawn filled and labelled "measured";
predicted ones hollow or as lines, labelled "predicted"."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from ..search import Constraint

LABEL = {"latency_ms": "latency (ms)", "flops": "FLOPs (M)", "params": "params (M)"}


def pareto_plot(path: Path, pareto: pd.DataFrame, uniform: Optional[pd.DataFrame], original_ms: Optional[float],
                original_accuracy: Optional[float], budget: Sequence[Constraint], verified: Optional[pd.DataFrame],
                chosen: Optional[dict], objective: str = "latency_ms", history: Optional[pd.DataFrame] = None,
                finetuned_accuracy: Optional[float] = None, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = 1.0 if objective == "latency_ms" else 1e-6
    fig, ax = plt.subplots(figsize=(10, 5))
    if history is not None and len(history):
        ax.scatter(history[objective] * scale, history["accuracy"], s=8, c="0.8", label="searched subnets (predicted)")
    if len(pareto):
        ax.plot(pareto[objective] * scale, pareto["accuracy"], "o-", ms=4, c="tab:blue", mfc="white",
                label="searched Pareto front (predicted)")
    if uniform is not None and len(uniform):
        ax.plot(uniform[objective] * scale, uniform["accuracy"], "s--", ms=5, c="tab:gray", mfc="white",
                label="uniform width ratios (predicted)")
        for _, r in uniform.iterrows():
            ax.annotate(f"{r['ratio']:g}x", (r[objective] * scale, r["accuracy"]), fontsize=7, xytext=(3, -9),
                        textcoords="offset points", color="0.4")
    if verified is not None and len(verified) and objective == "latency_ms":
        cand = verified[verified["model"] == "candidate"]
        for _, r in cand.iterrows():
            ax.plot([r["predicted_ms"], r["median_ms"]], [r["accuracy"]] * 2, c="tab:orange", lw=0.8, alpha=0.7)
        # median_ms is the quietest round's median, which can lie outside the pooled samples' p10-p90
        xerr = [(cand["median_ms"] - cand["p10_ms"]).clip(lower=0), (cand["p90_ms"] - cand["median_ms"]).clip(lower=0)]
        ax.errorbar(cand["median_ms"], cand["accuracy"], xerr=xerr,
                    fmt="o", ms=5, c="tab:orange", label="verified candidates (measured, p10-p90)")
    if original_ms is not None and objective == "latency_ms":
        ax.axvline(original_ms, c="k", lw=0.6, ls=":")
        if original_accuracy is not None:
            ax.plot([original_ms], [original_accuracy], "*", ms=13, c="k", label="original model (measured)")
    for c in budget:
        if c.column == objective:
            ax.axvline(c.limit * scale, c="tab:red", lw=1, ls="--", label=f"budget ({c.text or c.metric})")
    if chosen is not None and objective == "latency_ms":
        ax.plot([chosen["median_ms"]], [chosen["accuracy"]], "D", ms=9, c="tab:green", label="chosen (measured; supernet estimate)")
        if finetuned_accuracy is not None:
            ax.plot([chosen["median_ms"]], [finetuned_accuracy], "P", ms=11, c="tab:green", label="chosen after fine-tune (measured)")
            ax.plot([chosen["median_ms"]] * 2, [chosen["accuracy"], finetuned_accuracy], c="tab:green", lw=0.8)
    ax.set_xlabel(LABEL.get(objective, objective))
    ax.set_ylabel("top-1 accuracy (validation split)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
