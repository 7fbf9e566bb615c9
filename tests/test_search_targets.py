"""``slimnas search`` under several latency targets (issue 15 item 5): ``--target NAME:KEY=VALUE,...`` as in
``slimnas slim``, budgets ``latency[NAME]<=...`` resolved against the original timed on that target, one predicted
latency column per target in pareto.csv; a rerun reuses every target's timing; bad input is one line, exit code 2
and no --out folder."""
from __future__ import annotations

import io
import json
import math
import re

import pandas as pd
import pytest

from slimnas.cli import main
from slimnas.search import parse_constraint
from slimnas.subnet import Subnet
from tests.latency_helpers import SLIM_RATIOS, tiny_slim_table

LOOSE = 0.95  # both targets' relative budget in the first search


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny `slimnas train` run of TinyNet at 32 px on the built-in digits, and two latency tables measured here:
    onnxruntime FP32 at batch 1 (the default target) and at batch 2 (target ``b2``)."""
    root = tmp_path_factory.mktemp("search_targets")
    run = root / "run"
    assert main(["train", "tests.nets:tiny_net", "--input-size", "32", "--ratios", ",".join(map(str, SLIM_RATIOS)),
                 "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16", "--eval-images", "0",
                 "--no-progress", "--out", str(run)]) == 0
    return root, run, tiny_slim_table(root / "t_b1"), tiny_slim_table(root / "t_b2", batch=2)


def search_args(trained, out, *constraints: str, targets=None) -> list[str]:
    _, run, t1, t2 = trained
    targets = [f"b2:batch=2,table={t2}"] if targets is None else targets
    return ["search", str(run), "--table", str(t1), *[a for t in targets for a in ("--target", t)],
            *[a for c in constraints for a in ("--constraint", c)], "--rounds", "2", "--steady-pct", "1000",
            "--population", "6", "--generations", "2", "--calib-images", "16", "--val-images", "16",
            "--no-progress", "--out", str(out)]


def originals(out) -> tuple[float, float]:
    """The original's median (ms) on the default target and on b2, as this search timed them."""
    ref = json.loads((out / "reference.json").read_text())
    assert ref["targets"]["b2"]["backend"]["batch"] == 2 and ref["backend"]["batch"] == 1
    return ref["original"]["median_ms"], ref["targets"]["b2"]["original"]["median_ms"]


def chosen_row(out) -> pd.Series:
    """The history row of the picked subnet (subnet.json: its widths, with the arrangement that won its score)."""
    widths = Subnet.from_json((out / "subnet.json").read_text()).widths
    history = pd.read_csv(out / "search_history.csv")
    rows = history[[Subnet.from_json(s).widths == widths for s in history["subnet"]]]
    assert len(rows) >= 1
    return rows.iloc[0]


def logged_ms(stdout: str, target: str) -> float:
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith(f"target {target} (")]
    return float(re.search(r"\): ([0-9.]+) ms predicted", line).group(1))


@pytest.fixture(scope="module")
def loose(trained):
    """Both targets at 0.95x of their own original, then the same command again into the same --out."""
    out = trained[0] / "loose"
    args = search_args(trained, out, f"latency<={LOOSE}x", f"latency[b2]<={LOOSE}x")
    return out, args


def test_both_budgets_hold_on_the_predicted_latencies_and_a_tighter_one_limits_the_search(trained, loose, capsys):
    out, args = loose
    assert main(args) == 0
    first = capsys.readouterr().out
    d_ms, b_ms = originals(out)
    pareto, history = pd.read_csv(out / "pareto.csv"), pd.read_csv(out / "search_history.csv")
    assert {"latency_ms", "latency_ms[b2]"} <= set(pareto.columns)
    assert (pareto["latency_ms"] <= LOOSE * d_ms + 1e-9).all() and (pareto["latency_ms[b2]"] <= LOOSE * b_ms + 1e-9).all()
    row = chosen_row(out)
    assert logged_ms(first, "default") == pytest.approx(row["latency_ms"], abs=1e-4)
    assert logged_ms(first, "b2") == pytest.approx(row["latency_ms[b2]"], abs=1e-4)

    # a budget on b2 halfway into what the loose search accepted, as a fraction of b2's original (the ratio of a
    # prediction to the original it is anchored on follows the table, not the machine's speed of the moment)
    feasible = history[history["feasible"].astype(bool)]
    ratios = feasible["latency_ms[b2]"] / b_ms
    assert ratios.max() - ratios.min() > 0.05, "the loose search must accept a range of b2 latencies"
    tight = round(float(ratios.min() + ratios.max()) / 2, 3)
    out2 = trained[0] / "tight"
    assert main(search_args(trained, out2, f"latency<={LOOSE}x", f"latency[b2]<={tight}x")) == 0
    second = capsys.readouterr().out
    d2, b2 = originals(out2)
    pareto2, history2 = pd.read_csv(out2 / "pareto.csv"), pd.read_csv(out2 / "search_history.csv")
    kept = history2[history2["feasible"].astype(bool)]
    assert (kept["latency_ms[b2]"] <= tight * b2 + 1e-9).all() and (pareto2["latency_ms[b2]"] <= tight * b2 + 1e-9).all()
    assert (pareto2["latency_ms"] <= LOOSE * d2 + 1e-9).all()
    assert (ratios > tight).any(), "the tighter budget must exclude subnets the loose one accepted"
    row2 = chosen_row(out2)
    assert row2["latency_ms[b2]"] <= tight * b2 + 1e-9 and logged_ms(second, "b2") <= tight * b2 + 1e-4
    assert parse_constraint(f"latency[b2]<={tight}x").resolve(b2).describe() in second  # against b2's own original


def test_a_rerun_reuses_every_targets_timing(loose, capsys):
    out, args = loose
    if not (out / "pareto.csv").is_file():
        assert main(args) == 0
    reference, pareto = (out / "reference.json").read_text(), (out / "pareto.csv").read_text()
    capsys.readouterr()
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "timing the original" not in text
    assert text.count("the original's timing of the first invocation is reused") == 2 and ", target b2)" in text
    # the rerun re-anchors the tables on the saved timings and writes the front again: the same numbers, but a full
    # suite run once gave one latency that differed in its 17th significant digit (cause not found; a re-timed
    # original, which this test guards against, differs by percents), so floats are compared to 12 digits
    assert _same(json.loads((out / "reference.json").read_text()), json.loads(reference))
    pd.testing.assert_frame_equal(pd.read_csv(out / "pareto.csv"), pd.read_csv(io.StringIO(pareto)), check_exact=False,
                                  rtol=1e-12, atol=0.0)


def _same(a, b) -> bool:
    """JSON values equal, floats to 12 significant digits."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0) or (math.isnan(a) and math.isnan(b))
    return a == b


@pytest.mark.parametrize("case, fragments", [
    ("malformed", ["--target takes NAME:KEY=VALUE"]),
    ("unknown key", ["--target b2", "unknown key 'latency.targets.b2.bach'"]),
    ("unknown target", ["names target 'b3' but latency.targets defines b2"]),
    ("no table fits", ["latency.targets.b3: no latency table fits target b3", "batch 3", "table=DIR"]),
    ("table of another runtime", ["latency.targets.b3:", "batch"]),
    ("table missing", ["latency.targets.b2.table: latency table", "does not exist"]),
    ("below the smallest", ["latency[b2] budget", "(0.01x of", "is below the smallest subnet"]),
])
def test_bad_targets_are_one_line_and_leave_no_out_folder(trained, tmp_path, capsys, case, fragments):
    _, _, _, t2 = trained
    b2 = f"b2:batch=2,table={t2}"
    targets, constraints = {
        "malformed": (["b2"], ["latency[b2]<=0.9x"]),
        "unknown key": (["b2:bach=2"], ["latency[b2]<=0.9x"]),
        "unknown target": ([b2], ["latency<=0.9x", "latency[b3]<=0.9x"]),
        "no table fits": ([b2, "b3:batch=3"], ["latency[b3]<=0.9x"]),
        "table of another runtime": ([f"b3:batch=3,table={t2}"], ["latency[b3]<=0.9x"]),
        "table missing": ([f"b2:batch=2,table={tmp_path / 'nope'}"], ["latency[b2]<=0.9x"]),
        "below the smallest": ([b2], ["latency<=0.9x", "latency[b2]<=0.01x"]),
    }[case]
    out = tmp_path / "out"
    assert main(search_args(trained, out, *constraints, targets=targets)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("slimnas search: error: "), err
    for f in fragments:
        assert f in err, err
    assert not out.exists(), "bad input must leave no --out folder"


def test_help_shows_a_search_under_two_targets(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = capsys.readouterr().out
    example = text.split("examples:")[1].split("\n\n")[0]
    assert example.count("--target ") >= 2 and "latency[int8_t1]<=" in example and "table=" in example
    assert "--target NAME:KEY=VALUE" in text
