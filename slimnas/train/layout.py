"""The ``--bins`` option resolved against a supernet: which widths each group keeps, at what cost, on disk.

``flops:N`` spaces each group's candidates by model FLOPs; ``latency:N:PATH`` by predicted latency, where PATH
is a latency table directory written by ``slimnas profile`` (its ``LatencyPredictor`` gives the latency; the
table must have been built for this network, input shape and search space, but not on this machine: bins
need the device's relative costs, not a timing of this one) or a CSV with columns ``group,width,latency_ms``.
:meth:`BinLayout.write` puts the layout in a folder as ``bins.csv`` (every candidate, kept or not) and
``bins.png``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from ..errors import SlimnasError
from ..fileio import atomic_path
from ..space import SearchSpace
from .bins import CostFn, bin_table, cost_bins, default_step, flops_cost, predictor_cost, table_latency

USAGE = "flops:N, latency:N:TABLE_DIR (from `slimnas profile`) or latency:N:TABLE.csv (columns group,width,latency_ms)"


@dataclass(frozen=True)
class BinLayout:
    """The full space, the binned one, and the cost the bins were spaced by."""

    kind: str  # flops | latency
    full: SearchSpace
    space: SearchSpace  # the kept widths
    cost: CostFn
    step: float  # the cost step the bins are spaced by (cost units, before ``scale``)
    unit: str  # column name of the cost: mflops | latency_ms
    scale: float  # cost * scale is in ``unit``
    source: str  # where the cost came from (the table path, or "analytic")

    def rows(self) -> list[dict]:
        return bin_table(self.space, self.cost, self.full, self.unit, self.scale)

    def summary(self) -> str:
        """One line per group: the widths kept."""
        return "\n".join(f"  {g.name}: {' '.join(map(str, g.choices))}  (of {len(self.full[g.name].choices)})"
                         for g in self.space.groups)

    def write(self, folder: Path) -> list[Path]:
        """``bins.csv`` and ``bins.png`` in ``folder``; returns the paths written."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        rows = self.rows()
        csv_path, png_path = folder / "bins.csv", folder / "bins.png"
        with atomic_path(csv_path) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        plot_layout(rows, self.unit, f"{self.kind} bins ({self.source})", png_path)
        return [csv_path, png_path]


def parse_bins(text: str) -> tuple[str, int, Optional[str]]:
    """``flops:4`` -> ("flops", 4, None); ``latency:4:PATH`` -> ("latency", 4, PATH)."""
    kind, _, rest = text.partition(":")
    n_text, _, path = rest.partition(":")
    try:
        n = int(n_text or 4)
    except ValueError:
        raise SlimnasError(f"bins must look like {USAGE}; got {text!r}") from None
    if kind not in ("flops", "latency"):
        raise SlimnasError(f"unknown bins kind {kind!r}: use {USAGE}")
    if kind == "latency" and not path:
        raise SlimnasError(f"latency bins need a table: {USAGE}")
    return kind, n, path or None


def latency_cost(path: str, net) -> CostFn:
    """``latency_ms(group, width)`` from a profiler table directory or a ``group,width,latency_ms`` CSV."""
    p = Path(path)
    if p.is_dir() or p.name in ("entries.csv", "fingerprint.json"):
        from ..latency import LatencyPredictor, LatencyTable

        return predictor_cost(LatencyPredictor(LatencyTable.load(p), net))  # checks model, shape and space only
    if not p.is_file():
        raise SlimnasError(f"latency table {path} does not exist: give a table directory from `slimnas profile` or a CSV")
    try:
        df = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SlimnasError(f"{path} is not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = {"group", "width", "latency_ms"} - set(df.columns)
    if missing:
        raise SlimnasError(f"{path} lacks columns {', '.join(sorted(missing))} (need group,width,latency_ms)")
    return table_latency({(r.group, int(r.width)): float(r.latency_ms) for r in df.itertuples()})


def make_layout(text: Optional[str], net) -> Optional[BinLayout]:
    """The layout ``text`` (the ``--bins`` value) asks for on supernet ``net``; None for no bins."""
    if not text:
        return None
    kind, n, path = parse_bins(text)
    if kind == "flops":
        cost, unit, scale, source = flops_cost(net), "mflops", 1e-6, "analytic"
    else:
        cost, unit, scale, source = latency_cost(path, net), "latency_ms", 1.0, str(path)
    step = default_step(net.space, cost, n)
    return BinLayout(kind, net.space, cost_bins(net.space, cost, n, step), cost, step, unit, scale, source)


def plot_layout(rows: list[dict], unit: str, title: str, path: Path) -> None:
    """One line per group: every candidate's cost (grey) and the kept ones (filled), to see the equal steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.DataFrame(rows)
    groups = list(dict.fromkeys(df["group"]))
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(groups) + 1.5))
    for i, g in enumerate(groups):
        d = df[df["group"] == g]
        ax.plot(d[unit], [i] * len(d), "o", color="0.8", ms=4)
        k = d[d["kept"]]
        ax.plot(k[unit], [i] * len(k), "o-", color="C0", ms=6)
        for x, w in zip(k[unit], k["width"]):
            ax.annotate(str(w), (x, i), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=6)
    ax.set_yticks(range(len(groups)), groups, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel(f"model {unit} with the group at that width")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
