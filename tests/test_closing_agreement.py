"""benchmarks/closing_agreement.py: two closing runs of the headline compared model by model."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import closing_agreement


def results(ratios: dict, repeat: float, base_ms: float) -> dict:
    """A headline results.json as benchmarks/headline.py writes it, reduced to what the comparison reads."""
    rows, names, models = [], [], []
    for (method, seed), ratio in ratios.items():
        rows.append({"method": method, "budget": "0.5x", "fraction": 0.5, "seed": seed, "knob_name": "knob", "test_top1": 0.7})
        names.append(f"{method}@0.5x#{seed}")
        ms = ratio * base_ms
        models.append({"latency_ms": ms, "median_ms": ms, "p10_ms": ms, "p90_ms": ms, "ratio": ratio, "ratio_p10": ratio,
                       "ratio_p90": ratio, "repeat_pct": repeat})
    return {"rows": rows, "final_timing": {"names": names, "models": models, "base": {"latency_ms": base_ms}}}


def test_two_runs_compared_model_by_model(tmp_path):
    a = results({("fastnas", 0): 0.46, ("uniform", 0): 0.49, ("uniform", 1): 0.51}, 1.0, 0.44)
    b = results({("fastnas", 0): 0.46 * 1.02, ("uniform", 0): 0.49 * 0.98, ("uniform", 1): 0.47}, 2.0, 0.50)
    b["rows"].append({"method": "fastnas", "budget": "0.5x", "fraction": 0.5, "seed": 1, "knob_name": "knob", "test_top1": 0.7})
    b["final_timing"]["names"].append("fastnas@0.5x#1")  # only in B: left out
    b["final_timing"]["models"].append(dict(b["final_timing"]["models"][0]))
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    out = tmp_path / "out"
    assert closing_agreement.main([str(pa), str(pb), "--out", str(out)]) == 0
    c = json.loads((out / "agreement.json").read_text())
    assert c["n"] == 3 and [m["name"] for m in c["models"]] == ["fastnas@0.5x#0", "uniform@0.5x#0", "uniform@0.5x#1"]
    change = [m["change_pct"] for m in c["models"]]
    assert change == pytest.approx([2.0, -2.0, (0.47 / 0.51 - 1) * 100])
    assert c["models"][0]["expected_pct"] == pytest.approx(5 ** 0.5)  # sqrt(1^2 + 2^2)
    assert c["within_2_errors"] == 2 and c["same_sign"] == 2  # -7.8% is over 2 x 2.24%
    # uniform seed 1 missed the budget in A (0.51 > 0.5) and met it in B; fastnas spends 92% then 94%, under 95% in both
    assert c["budget_checks_agree"] == 2 and c["share_checks_agree"] == 2
    assert (out / "agreement.png").stat().st_size > 0 and "| uniform@0.5x#1 | 0.510 | 0.470 |" in (out / "agreement.md").read_text()


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{not json", "not a headline results.json"),
    (json.dumps({"rows": []}), "not a headline results.json"),
])
def test_bad_input_is_one_line_error_and_writes_nothing(tmp_path, capsys, content, message):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(results({("uniform", 0): 0.49}, 1.0, 0.44)))
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    out = tmp_path / "out"
    assert closing_agreement.main([str(good), str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("closing_agreement: error: ") and message in err[0]
    assert not out.exists()


def test_runs_without_a_common_model_are_refused(tmp_path, capsys):
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(results({("uniform", 0): 0.49}, 1.0, 0.44)))
    pb.write_text(json.dumps(results({("fastnas", 0): 0.46}, 1.0, 0.44)))
    assert closing_agreement.main([str(pa), str(pb), "--out", str(tmp_path / "out")]) == 2
    assert "no model in common" in capsys.readouterr().err
