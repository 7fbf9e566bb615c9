"""FLOPs-sensitive bins are about equally FLOPs-spaced; latency bins snap to the ends of latency plateaus and come
from the profiler's own tables (a real one measured here on TinyNet, and the shipped MobileNetV2 one)."""
from __future__ import annotations

import json
import math
import random
import shutil

import numpy as np
import pandas as pd
import pytest
import torchvision

import slimnas
from slimnas import Subnet
from slimnas.cli import main
from slimnas.latency import LatencyPredictor, LatencyTable, create_backend, profile
from slimnas.train import flops_bins, flops_cost, latency_bins, make_layout, predictor_cost, table_latency
from slimnas.train.bins import default_step
from tests.conftest import ROOT
from tests.latency_helpers import FAST
from tests.nets import TinyNet


@pytest.fixture(scope="module")
def net():
    ratios = tuple(i / 16 for i in range(4, 17))
    return slimnas.convert(torchvision.models.mobilenet_v2(num_classes=10), 32, ratios=ratios, divisor=4)


def test_flops_bins_are_equal_flops_steps(net):
    cost = flops_cost(net)
    step = default_step(net.space, cost, 4)
    binned = flops_bins(net, 4)
    counts, step_sizes = [], []
    for g in binned.groups:
        full = net.space[g.name].choices
        costs = {w: cost(g.name, w) for w in full}
        grain = max(costs[b] - costs[a] for a, b in zip(full, full[1:]))  # the coarsest single candidate step
        deltas = [costs[b] - costs[a] for a, b in zip(g.choices, g.choices[1:])]
        assert g.choices[0] == full[0] and g.choices[-1] == full[-1]
        for a, b in zip(g.choices[:-2], g.choices[1:-1]):
            d = costs[b] - costs[a]
            adjacent = full.index(b) == full.index(a) + 1  # a single candidate step larger than the bin step
            assert step - grain - 1e-6 <= d and (d <= step * (1 + 1e-9) or adjacent)
        if deltas:
            assert deltas[-1] <= 1.5 * step + grain
        counts.append(len(g.choices))
        step_sizes += deltas[:-1]
    assert len(set(counts)) > 2, "heavy and light groups should get different numbers of bins"
    assert 0.6 * step <= np.median(step_sizes) <= step
    heavy = max(binned.groups, key=lambda g: cost(g.name, g.choices[-1]) - cost(g.name, g.choices[0]))
    assert len(heavy.choices) == max(counts)


def test_latency_bins_snap_to_plateau_ends(net):
    flops = flops_cost(net)

    def staircase_ms(group, width):  # kernels that speed-step every 16 channels, cost from the FLOPs model
        return flops(group, int(math.ceil(width / 16) * 16)) * 1e-6

    binned = latency_bins(net, staircase_ms, 4)
    snapped = 0
    for g in binned.groups:
        full = net.space[g.name].choices
        for w in g.choices[:-1]:
            nxt = full[full.index(w) + 1]
            assert staircase_ms(g.name, nxt) > staircase_ms(g.name, w), f"{g.name}: {w} is not a plateau end"
            snapped += w > g.choices[0]
    assert snapped > 5


def test_table_latency_interpolates():
    f = table_latency({("a", 8): 1.0, ("a", 16): 2.0, ("b", 8): 5.0})
    assert f("a", 12) == pytest.approx(1.5) and f("b", 8) == 5.0
    with pytest.raises(slimnas.SlimnasError):
        f("c", 8)


# -- latency bins from the profiler's own tables -------------------------------------------------------------
BIN_RATIOS = (0.25, 0.5, 0.75, 1.0)
SHIPPED = ROOT / "latency_tables" / "mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32"


def tiny_supernet(ratios=BIN_RATIOS):
    return slimnas.convert(TinyNet().eval(), 16, ratios=ratios)


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    """A real table of TinyNet (16x16, four ratios) measured with onnxruntime, fast settings."""
    out = tmp_path_factory.mktemp("bins_table")
    profile(tiny_supernet(), create_backend("onnxruntime"), out, "tests.nets:tiny_net", FAST,
            model_args={"model": "tests.nets:tiny_net", "ratios": list(BIN_RATIOS)})
    return out


def assert_equal_steps(layout):
    """A kept width is the widest within one bin step of the previous kept one: every width skipped between
    them costs at most a step more (or is no faster than its successor). The last pair may be folded."""
    cost, step = layout.cost, layout.step
    for g in layout.space.groups:
        full = layout.full[g.name].choices
        for a, b in zip(g.choices[:-2], g.choices[1:-1]):
            for c in full[full.index(a) + 1: full.index(b)]:
                nxt = full[full.index(c) + 1]
                assert cost(g.name, c) - cost(g.name, a) <= step * (1 + 1e-9) or cost(g.name, nxt) <= cost(g.name, c), \
                    (g.name, a, b, c)
            nxt = full[full.index(b) + 1]  # and the next candidate was beyond the step
            assert cost(g.name, nxt) - cost(g.name, a) > step * (1 - 1e-9), (g.name, a, b)


def test_latency_bins_from_a_profiled_table(tiny_table, tmp_path):
    net = tiny_supernet()
    predictor = LatencyPredictor(LatencyTable.load(tiny_table), net)
    # the marginal is the mean prediction over random subnets with the group set; check the matrix plumbing
    # against subnets built one by one
    samples = [net.space.sample(s) for s in [random.Random(3)] for _ in range(5)]
    cost = predictor_cost(predictor, samples=5, seed=3)
    for g in net.space.groups:
        for w in g.choices:
            subs = [Subnet({**s.widths, g.name: w}) for s in samples]
            assert cost(g.name, w) == pytest.approx(float(np.mean(predictor.predict(subs))), rel=1e-9)
    widest = predictor_cost(predictor, samples=0)
    g = net.space.groups[-1]
    assert widest(g.name, g.choices[0]) == pytest.approx(float(predictor.predict([Subnet({**net.space.max().widths, g.name: g.choices[0]})])[0]))

    layout = make_layout(f"latency:3:{tiny_table}", net)
    assert layout.kind == "latency" and layout.unit == "latency_ms"
    assert_equal_steps(layout)
    for g in layout.space.groups:
        assert set(g.choices) <= set(net.space[g.name].choices) and g.choices[-1] == net.space[g.name].choices[-1]
    # the CSV form still works and gives the same layout from the same numbers
    csv_path = tmp_path / "lat.csv"
    pd.DataFrame([{"group": r["group"], "width": r["width"], "latency_ms": r["latency_ms"]} for r in layout.rows()]
                 ).to_csv(csv_path, index=False)
    from_csv = make_layout(f"latency:3:{csv_path}", net)
    assert {g.name: g.choices for g in from_csv.space.groups} == {g.name: g.choices for g in layout.space.groups}

    # the CLI shows the layout and writes bins.csv + bins.png
    out = tmp_path / "bins"
    args = ["bins", "tests.nets:tiny_net", "--num-classes", "10", "--input-size", "16",
            "--ratios", ",".join(map(str, BIN_RATIOS)), "--bins", f"latency:3:{tiny_table}", "--out", str(out)]
    assert main(args) == 0
    written = pd.read_csv(out / "bins.csv")
    assert len(written) == sum(len(g.choices) for g in net.space.groups) and (out / "bins.png").stat().st_size > 1000
    kept = written[written["kept"]].groupby("group")["width"].apply(tuple).to_dict()
    assert kept == {g.name: g.choices for g in layout.space.groups}


def test_latency_bins_refuse_a_table_of_another_space(tiny_table, tmp_path, capsys):
    with pytest.raises(slimnas.SlimnasError, match="space_hash"):
        make_layout(f"latency:3:{tiny_table}", tiny_supernet(ratios=(0.5, 1.0)))
    out = tmp_path / "never"
    rc = main(["bins", "tests.nets:tiny_net", "--num-classes", "10", "--input-size", "16", "--ratios", "0.5,1",
               "--bins", f"latency:3:{tiny_table}", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "space_hash" in err and not out.exists()
    with pytest.raises(slimnas.SlimnasError, match="does not exist"):
        make_layout(f"latency:3:{tmp_path / 'missing'}", tiny_supernet())
    with pytest.raises(slimnas.SlimnasError, match="need a table"):
        make_layout("latency:3", tiny_supernet())


def test_latency_bins_from_the_shipped_mobilenet_v2_table(tmp_path):
    """The shipped 32x32 table lays out bins on any machine: only the network, shape and space are checked."""
    table = tmp_path / "table"
    shutil.copytree(SHIPPED, table)
    fp = json.loads((table / "fingerprint.json").read_text())
    (table / "fingerprint.json").write_text(json.dumps({**fp, "cpu_model": "another CPU", "device_name": "another CPU",
                                                        "cores": 64, "os": "elsewhere"}))
    net = slimnas.convert(torchvision.models.mobilenet_v2(num_classes=10), 32)
    layout = make_layout(f"latency:4:{table}", net)
    assert_equal_steps(layout)
    kept = {g.name: len(g.choices) for g in layout.space.groups}
    assert sum(kept.values()) < sum(len(g.choices) for g in net.space.groups) and max(kept.values()) >= 4
    rows = layout.rows()
    assert all(r["latency_ms"] > 0 for r in rows) and {r["group"] for r in rows} == {g.name for g in net.space.groups}
    (table / "fingerprint.json").write_text(json.dumps({**fp, "input_shape": [3, 64, 64]}))
    with pytest.raises(slimnas.SlimnasError, match="input_shape"):
        make_layout(f"latency:4:{table}", net)


def test_a_trained_run_keeps_its_bins_when_the_table_changes(tiny_table, tmp_path):
    """Latency bins are laid out from a table when a run starts. A table recalibrated (or profiled again) since lays
    out other widths; the run, resumed or loaded for a search, keeps the space its supernet was trained on."""
    from slimnas.data import DataConfig
    from slimnas.space import SpaceConfig
    from slimnas.train import TrainConfig
    from slimnas.train.run import RunSpec, load_run, train

    table = tmp_path / "table"
    shutil.copytree(tiny_table, table)
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=32, eval_images=0, progress=False)
    spec = RunSpec(model="tests.nets:tiny_net", input_size=16, num_classes=10, data=DataConfig("digits"),
                   space=SpaceConfig(ratios=BIN_RATIOS), strategy="sandwich", bins=f"latency:2:{table}", train=cfg)
    train(spec, tmp_path / "run")
    start = json.loads((tmp_path / "run" / "space_start.json").read_text())
    net = tiny_supernet()
    assert any(len(c) < len(net.space[g].choices) for g, c in start.items())  # the bins did narrow the space
    cal = json.loads((table / "calibration.json").read_text())  # the table recalibrated: another cost per kind
    cal.update(slopes={"conv": 0.05, "dwconv": 40.0, "linear": 1.0}, ridge=0.0, terms={"weights": 50.0})
    (table / "calibration.json").write_text(json.dumps(cal))
    moved = make_layout(f"latency:2:{table}", net)
    assert {g.name: list(g.choices) for g in moved.space.groups} != start  # what rebuilding the bins would give
    _, _, strategy, _ = load_run(tmp_path / "run")
    assert {g.name: list(g.choices) for g in strategy.space.groups} == start
    train(spec, tmp_path / "run", resume=True)  # a resume too
    assert json.loads((tmp_path / "run" / "space_start.json").read_text()) == start
