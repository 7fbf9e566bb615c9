"""benchmarks/headline_ladder.py: an ablation ladder from a headline results.json, paired by seed."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import headline_ladder

from tests.test_closing_agreement import results


def run_with_top1(top1: dict, ratios: dict) -> dict:
    r = results(ratios, 1.0, 0.44)
    for row in r["rows"]:
        row["test_top1"] = top1[(row["method"], row["seed"])]
    r["base"] = {"test_top1": 0.77}
    return r


def test_steps_are_paired_by_seed_and_shares_come_from_the_closing_run(tmp_path):
    top1 = {("fastnas", 0): 0.760, ("fastnas", 1): 0.762, ("a", 0): 0.758, ("a", 1): 0.766,
            ("b", 0): 0.761, ("b", 1): 0.770}
    ratios = {k: (0.44 if k[0] == "fastnas" else 0.49 if k[1] == 0 else 0.46) for k in top1}
    ratios[("b", 1)] = 0.51  # seed 1 of rung b missed the budget: no accuracy, no step for that seed
    path = tmp_path / "results.json"
    path.write_text(json.dumps(run_with_top1(top1, ratios)))
    out = tmp_path / "out"
    assert headline_ladder.main([str(path), "--budget", "0.5", "--rung", "first=a", "--rung", "second=b", "--out", str(out)]) == 0
    lad = json.loads((out / "ladder.json").read_text())
    a, b = lad["rungs"]
    assert a["top1_mean"] == pytest.approx(76.2) and "step" not in a
    assert a["vs_peer"] == pytest.approx({"0": -0.2, "1": 0.4}) and a["vs_peer_mean"] == pytest.approx(0.1)
    assert b["step"] == pytest.approx({"0": 0.3}) and b["top1"] == pytest.approx({"0": 76.1})
    assert a["share_min"] == pytest.approx(0.92) and a["spends"] == 1 and b["spends"] == 2  # 0.46/0.5 < 95%
    md = (out / "ladder.md").read_text()
    assert "| second | 76.10 | +0.30 | +0.30 |" in md and (out / "ladder.png").stat().st_size > 0


@pytest.mark.parametrize("args, message", [
    (["--rung", "nolabel"], "write LABEL=METHOD"),
    (["--rung", "x=absent"], "not in this run at 0.5x: absent"),
])
def test_bad_rungs_are_one_line_errors(tmp_path, capsys, args, message):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(run_with_top1({("a", 0): 0.7}, {("a", 0): 0.45})))
    out = tmp_path / "out"
    assert headline_ladder.main([str(path), "--budget", "0.5", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("headline_ladder: error: ") and message in err[0]
    assert not out.exists()
