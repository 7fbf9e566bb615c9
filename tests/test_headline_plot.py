"""The headline's accuracy-vs-latency plot: an arm variant's long name must not cover the points."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from headline_lib.report import LEGEND_WIDTH, figure, legend_label, plot

# a committed report with two long arm-variant names, INT8 rows and two seeds (no ../shared needed)
REPORT = ROOT / "benchmarks/results/headline/int8/depth-xeon/results.json"
ARM = "slimnas-bsnas:supernet_epochs=1:supernet_steps_per_epoch=1:search_sensitivity_levels=3:depth=1+int8"


def test_legend_label_breaks_long_names_after_their_fields_and_keeps_every_character():
    label = legend_label(ARM)
    assert label.replace("\n", "") == ARM
    lines = label.split("\n")
    assert len(lines) > 1 and all(len(line) <= LEGEND_WIDTH for line in lines)
    assert all(line.endswith(":") for line in lines[:-1])  # broken after a field, not inside one
    assert legend_label("fastnas") == "fastnas"
    assert all(len(line) <= 10 for line in legend_label("x" * 25, width=10).split("\n"))  # no ":" to break at


def test_the_legend_sits_beside_the_axes_not_over_the_points(tmp_path):
    import matplotlib.pyplot as plt

    results = json.loads(REPORT.read_text())
    fig = figure(results, results["rows"])
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1, "the legend overlaps the axes"
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(ARM[:20] in t for t in texts) and all(len(line) <= LEGEND_WIDTH for t in texts for line in t.split("\n"))
    plt.close(fig)
    plot(results, results["rows"], tmp_path / "p.png")  # the saved figure keeps the legend (tight bounding box)
    assert (tmp_path / "p.png").stat().st_size > 10_000 and not list(tmp_path.glob("*.tmp*"))
