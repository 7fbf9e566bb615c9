"""Calibration: per-kind slopes with a ridge toward one slope, the weights term, leave-one-out error, old calibration files,
per-entry drift correction, the end-to-end statistics and resumable chunked validation."""
from __future__ import annotations

import logging

import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

import slimnas
from slimnas.latency import Calibration, LatencyPredictor, LatencyTable, create_backend, profile
from slimnas.latency.calibration import KINDS, RIDGES, calibrate, fit, loo_rmspe
from slimnas.latency.e2e import E2EConfig, repeat_error_pct
from slimnas.latency.predictor import fit_calibration
from slimnas.latency.validate import validate
from slimnas.latency.worker import summarise

from .latency_helpers import FAST, MODEL_ARGS, tiny_supernet

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "latency_tables" / "mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32"
TRUE_SLOPES = np.array([0.9, 0.6, 1.3])
TRUE_B = 0.02


@pytest.fixture(scope="module")
def mbv2():
    """A real measured table (MobileNetV2 at 32x32, shipped) and the supernet it was built for."""
    table = LatencyTable.load(SHIPPED)
    net = slimnas.convert(slimnas.load_model("mobilenet_v2", num_classes=10), 32)
    return table, net


@pytest.fixture(scope="module")
def raw_k(mbv2):
    table, net = mbv2
    rng = random.Random(3)
    return LatencyPredictor(table, net).raw_by_kind([net.space.sample(rng) for _ in range(40)])


@pytest.fixture(scope="module")
def terms(mbv2):
    """The analytic terms (weights: M parameters, flops: MFLOPs) of the ``raw_k`` fixture's subnets (same seed)."""
    table, net = mbv2
    rng = random.Random(3)
    return LatencyPredictor(table, net).term_values([net.space.sample(rng) for _ in range(40)])


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("table")
    return profile(tiny_supernet(), create_backend("onnxruntime"), out, "tiny", FAST, model_args=MODEL_ARGS)


def test_raw_by_kind_columns_follow_the_units(raw_k):
    conv, dw, linear = (raw_k[:, KINDS.index(k)] for k in ("conv", "dwconv", "linear"))
    assert raw_k.shape == (40, len(KINDS)) and (conv > dw).all() and (dw > 0).all()
    assert (np.abs(linear) < 0.02 * raw_k.sum(1)).all()  # the 10-class classifier: about the empty call's cost


def test_per_kind_fit_recovers_known_slopes(raw_k):
    measured = raw_k @ TRUE_SLOPES + TRUE_B
    slopes, b, _ = fit(raw_k, measured, ridge=0.0)
    np.testing.assert_allclose(slopes, TRUE_SLOPES, rtol=1e-5)
    assert b == pytest.approx(TRUE_B, rel=1e-5)
    one = fit(raw_k, measured, ridge=math.inf)[0]
    assert np.ptp(one) == 0 and TRUE_SLOPES[1] < one[0] < TRUE_SLOPES[0]  # one slope: between the kinds'
    cal = calibrate(raw_k, measured, ridges=[1e-6, 1e-2, math.inf])  # exact data: the weakest ridge wins
    assert cal.ridge == 1e-6 and cal.loo_rmspe_pct < 0.1
    np.testing.assert_allclose([cal.slopes[k] for k in KINDS[:2]], TRUE_SLOPES[:2], rtol=0.01)
    cal = calibrate(raw_k, measured)  # the default grid's weakest ridge still moves depthwise toward its own slope
    assert cal.ridge == min(RIDGES) and cal.slopes["conv"] == pytest.approx(TRUE_SLOPES[0], rel=0.03)
    assert abs(cal.slopes["dwconv"] - TRUE_SLOPES[1]) < 0.7 * abs(one[1] - TRUE_SLOPES[1])


def test_no_kind_gets_a_slope_of_zero_or_less(raw_k):
    measured = raw_k @ np.array([1.0, -0.2, 1.0]) + TRUE_B  # what an unregularised fit to noise can produce
    cal = calibrate(raw_k, measured, ridges=[1e-6, math.inf])
    assert math.isinf(cal.ridge) and min(cal.slopes.values()) > 0


def test_ridge_pulls_slopes_together(raw_k):
    measured = raw_k @ TRUE_SLOPES + TRUE_B
    spreads = [np.ptp(fit(raw_k, measured, ridge=r)[0][:2]) for r in (0.0, 1e-3, 1e-1, 10.0)]
    assert all(a > b for a, b in zip(spreads, spreads[1:]))


def test_few_points_fall_back_to_one_slope(raw_k):
    measured = raw_k @ TRUE_SLOPES + TRUE_B
    cal = calibrate(raw_k[:8], measured[:8])
    assert math.isinf(cal.ridge) and len(set(cal.slopes.values())) == 1 and list(cal.loo_by_ridge) == ["inf"]


def test_loo_error_estimates_noise(raw_k):
    rng = np.random.default_rng(0)
    truth = raw_k @ TRUE_SLOPES + TRUE_B
    measured = truth * (1 + rng.normal(0, 0.03, len(truth)))
    loo = loo_rmspe(raw_k, measured, 1e-3)
    assert 2.0 < loo < 5.0  # near the 3% noise, a little above (each point is predicted without itself)
    total = raw_k.sum(1)
    errs = []
    for i in range(len(total)):  # one slope: by hand
        keep = np.arange(len(total)) != i
        a, b = fit_calibration(total[keep], measured[keep])
        errs.append((a * total[i] + b) / measured[i] - 1)
    assert loo_rmspe(raw_k, measured, math.inf) == pytest.approx(np.sqrt(np.mean(np.square(errs))) * 100)
    assert math.isnan(loo_rmspe(raw_k[:2], measured[:2]))


def test_weights_term_is_found_when_the_network_streams_its_weights(raw_k, terms):
    """A machine whose whole-network time has a part in the weights no entry holds: the calibration picks the
    form with the weights term, recovers its slope, and its error falls to the noise; without the term it cannot."""
    w = terms["weights"]
    assert np.ptp(w) > 0.5 and np.corrcoef(w, raw_k.sum(1))[0, 1] < 0.99  # not collinear with the entries
    rng = np.random.default_rng(1)
    truth = raw_k @ TRUE_SLOPES + 0.08 * w + TRUE_B
    measured = truth * (1 + rng.normal(0, 0.01, len(truth)))
    cal = calibrate(raw_k, measured, terms=terms)
    assert set(cal.terms) >= {"weights"} and cal.term("weights") == pytest.approx(0.08, rel=0.15)
    assert cal.term("flops") < 0.2 * 0.08 * w.mean() / terms["flops"].mean()  # flops, if kept, explains little
    assert cal.loo_rmspe_pct < 2.0 < calibrate(raw_k, measured).loo_rmspe_pct
    assert {"0.001", "0.001+weights", "inf+weights+flops"} <= set(cal.loo_by_ridge)
    assert cal.loo_rmspe_pct == min(cal.loo_by_ridge.values())
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal and back.terms == cal.terms


def test_flops_term_takes_the_compute_noisy_entries_miss(raw_k, terms):
    """Entries timed on a busy machine carry little of the compute that whole networks spend in proportion to
    their FLOPs: the form with the FLOPs term wins and predicts within the end-to-end noise."""
    rng = np.random.default_rng(2)
    truth = 0.003 * terms["flops"] + 0.05 * raw_k.sum(1) + TRUE_B
    measured = truth * (1 + rng.normal(0, 0.005, len(truth)))
    cal = calibrate(raw_k, measured, terms=terms)
    entries_only = calibrate(raw_k, measured)
    assert "flops" in cal.terms and cal.term("flops") == pytest.approx(0.003, rel=0.2)
    assert cal.loo_rmspe_pct < 1.0 and cal.loo_rmspe_pct < 0.5 * entries_only.loo_rmspe_pct


def test_a_term_is_never_negative(raw_k, terms):
    measured = raw_k @ TRUE_SLOPES - 0.05 * terms["weights"] + 0.3  # a fit would make weights free to stream
    cal = calibrate(raw_k, measured, terms={"weights": terms["weights"]})
    assert cal.terms == {} and cal.term("weights") == 0.0
    few = calibrate(raw_k[:8], measured[:8], terms={t: v[:8] for t, v in terms.items()})  # 8 points: one slope, no term
    assert few.terms == {} and list(few.loo_by_ridge) == ["inf"]


def test_predictor_with_analytic_terms(mbv2):
    """``calibrated`` fits the terms from end-to-end points and ``predict`` adds them: slopes, c_t and b as fitted."""
    table, net = mbv2
    rng = random.Random(5)
    subs = [net.space.sample(rng) for _ in range(30)]
    plain = LatencyPredictor(table, net)
    x = plain.term_values(subs)
    np.testing.assert_allclose(x["weights"], [net.params(s) / 1e6 for s in subs])
    np.testing.assert_allclose(x["flops"], [net.flops(s) / 1e6 for s in subs])
    measured = plain.raw_by_kind(subs) @ TRUE_SLOPES + 0.1 * x["weights"] + TRUE_B
    pred, saved = plain.calibrated(subs, measured, probe_ms=plain.reference_probe_ms, drift_corrected=False)
    assert pred.terms.get("weights") == pytest.approx(0.1, rel=0.1)  # the ridge moves the slopes a little and saved["terms"] == pred.terms
    np.testing.assert_allclose(pred.predict(subs), measured, rtol=0.01)
    by_hand = pred.raw_by_kind(subs) @ pred.slopes + pred.b + sum(c * x[t] for t, c in pred.terms.items())
    np.testing.assert_allclose(pred.predict(subs), by_hand)


def test_old_calibration_file_still_loads(mbv2, tmp_path):
    table, net = mbv2
    copy = tmp_path / "old"
    shutil.copytree(SHIPPED, copy)
    (copy / "calibration.json").write_text(json.dumps({"a": 0.93, "b": 0.013, "loo_rmspe_pct": 8.5, "probe_ms": 0.135, "n": 10}))
    pred = LatencyPredictor(LatencyTable.load(copy), net)
    assert not pred.drift_corrected and pred.calibration.slopes == {} and math.isinf(pred.calibration.ridge)
    assert pred.terms == {}  # files from before the analytic terms: the entries-only form
    s = [net.space.min(), net.space.max()]
    np.testing.assert_allclose(pred.predict(s), 0.93 * pred.raw(s) + 0.013)
    assert pred.error_pct == 8.5 and pred.reference_probe_ms == 0.135
    cal = Calibration.from_dict({"a": 2.0, "b": 0.1})
    assert all(cal.slope(k) == 2.0 for k in KINDS)
    assert Calibration.from_dict(cal.to_dict()) == cal


def test_calibration_round_trips_through_the_table(tiny_table):
    net = tiny_supernet()
    pred = LatencyPredictor(tiny_table, net)
    cal = tiny_table.calibration()
    assert cal["drift_corrected"] and cal["e2e_statistic"] == "best_round" and cal["n"] == 3
    assert pred.drift_corrected and pred.slopes.tolist() == [cal["slopes"][k] for k in KINDS]
    s = [net.space.min(), net.space.max()]
    np.testing.assert_allclose(pred.predict(s), pred.raw_by_kind(s) @ pred.slopes + pred.b)


def test_drift_correction_puts_entries_on_the_reference_speed(tiny_table, tmp_path):
    net = tiny_supernet()
    copy = tmp_path / "t"
    shutil.copytree(tiny_table.path, copy)
    table = LatencyTable.load(copy)
    rows = table.rows.copy()
    reference = table.probe_ms()
    unit = (rows["kind"] == "unit") & (rows["source"] == "measured")
    rows.loc[unit, "probe_ms"] = 2 * reference  # every entry timed while the machine ran half as fast
    table.rewrite(rows)
    table = LatencyTable.load(copy)
    s = [net.space.min(), net.space.max()]
    plain = LatencyPredictor(table, net)._with_drift_correction(False)
    corrected = LatencyPredictor(table, net)._with_drift_correction(True)
    np.testing.assert_allclose(corrected.raw(s), 0.5 * plain.raw(s), rtol=1e-9)  # interpolated rows follow their signature


def test_worker_statistics():
    rounds = [[1.0, 1.1, 1.0], [2.0, 2.0, 2.1], [1.05, 1.0, 1.05], [1.0, 1.0, 1.0]]
    s = summarise(rounds)
    assert s["best_round_ms"] == 1.0 and s["round_medians_ms"] == [1.0, 2.0, 1.05, 1.0]
    assert s["median_ms"] == pytest.approx(1.025) and s["n"] == 12
    assert s["best_half_diff_pct"] == 0.0  # both halves have a round at 1.0
    assert s["half_diff_pct"] < 0  # the odd rounds include the slow one
    assert math.isnan(summarise([[1.0, 1.0]])["best_half_diff_pct"])
    assert repeat_error_pct([2.0, -2.0, float("nan")]) == pytest.approx(math.sqrt(2))
    cfg = E2EConfig()
    assert cfg.latency_ms(s) == 1.0 and cfg.probe_ms([0.2, 0.1, 0.3]) == 0.1
    assert E2EConfig(statistic="median").probe_ms([0.2, 0.1, 0.3]) == 0.2
    with pytest.raises(slimnas.SlimnasError, match="statistic"):
        E2EConfig(statistic="mean")


def test_chunked_validation_resumes(tiny_table, tmp_path, caplog):
    out = tmp_path / "v"
    caplog.set_level(logging.INFO, logger="slimnas")
    first = validate(tiny_table.path, tiny_supernet(), samples=4, seed=1, out=out, chunk=2, max_chunks=1)
    assert first == {"finished": False, "timed": 2, "samples": 4}
    chunk0 = (out / "work" / "chunk_000.json").read_text()
    result = validate(tiny_table.path, tiny_supernet(), samples=4, seed=1, out=out, chunk=2, max_chunks=1)
    logs = [r.getMessage() for r in caplog.records]
    assert result["finished"] and (out / "work" / "chunk_000.json").read_text() == chunk0  # not timed again
    assert sum("chunk" in line for line in logs) == 2
    assert len(result["speed_factors"]) == 2 and set(result["metrics_by_statistic"]) == {"best_round", "median"}
    assert result["statistic"] == "best_round" and result["metrics"]["n"] == 4
    # each chunk timed the original beside its subnets: the predictions anchored on it, as a slim run uses them
    anchored = result["metrics_anchored_on_original"]
    assert anchored["n"] == 4 and np.isfinite(anchored["rmspe_pct"]) and len(result["original_measured_over_predicted"]) == 2
    assert all(f > 0 and math.isfinite(f) for f in result["original_measured_over_predicted"])
    chunk1 = json.loads((out / "work" / "chunk_001.json").read_text())
    assert chunk1["job"]["original"] == tiny_supernet().space.original().hash and len(chunk1["models"]) == 2
    rows = (out / "validate.csv").read_text().splitlines()
    assert len(rows) == 5 and "best_round_ms" in rows[0] and (out / "validate.png").is_file()
    assert not list((out / "work" / "onnx").glob("*.onnx"))


def test_cli_calibrate_upgrades_an_old_calibration(tiny_table, tmp_path, capsys):
    from slimnas.cli import main

    copy = tmp_path / "t"
    shutil.copytree(tiny_table.path, copy)
    (copy / "calibration.json").write_text(json.dumps({"a": 1.0, "b": 0.0, "loo_rmspe_pct": 1.0, "probe_ms": 0.1, "n": 3}))
    assert main(["latency", "calibrate", "--table", str(copy)]) == 0
    cal = LatencyTable.load(copy).calibration()
    assert set(cal["slopes"]) == set(KINDS) and cal["drift_corrected"] and cal["n"] == 3
    assert "slopes" in capsys.readouterr().out
    table = LatencyTable.load(copy)
    table.rewrite(table.rows[table.rows["kind"] != "model"])
    assert main(["latency", "calibrate", "--table", str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no end-to-end rows" in err
