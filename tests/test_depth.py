"""Elastic depth (issue 16): skippable residual blocks found by tracing, dropped in the supernet, the export, ONNX,
the FLOPs count and the latency predictor alike."""
from __future__ import annotations

import copy
import json
import random

import numpy as np
import onnx
import pandas as pd
import pytest
import thop
import torch
import torchvision
from torch import nn

import slimnas
from slimnas.cost import thop_custom_ops
from slimnas.export import onnx_max_abs_diff
from slimnas.subnet import Subnet
from tests.conftest import calibrate
from tests.nets import TinyNet

SIZE = 32
ZOO = {
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(num_classes=10),
    "mobilenet_v3_large": lambda: torchvision.models.mobilenet_v3_large(num_classes=10),
    "efficientnet_b0": lambda: torchvision.models.efficientnet_b0(num_classes=10),
    "resnet50": lambda: torchvision.models.resnet50(num_classes=10),
    "tiny_net": lambda: TinyNet(10),
}


def _net(name: str, **options) -> tuple[nn.Module, slimnas.Supernet]:
    torch.manual_seed(0)
    model = calibrate(ZOO[name](), (3, SIZE, SIZE))
    return model, slimnas.convert(model, SIZE, depth=True, **options).eval()


def _dropping(net, seed: int = 0) -> Subnet:
    """A random subnet that drops at least one block and narrows at least one group."""
    rng = random.Random(seed)
    while True:
        s = net.space.sample(rng)
        if net.space.dropped(s) and any(s[g.name] < g.width for g in net.space.groups):
            return s


def test_stages_are_found_by_tracing():
    """MobileNetV2's stride-1 inverted residuals and ResNet's identity blocks (a ReLU after the add), in stages."""
    net = slimnas.convert(torchvision.models.mobilenet_v2(num_classes=10), SIZE, depth=True)
    assert [(st.name, len(st.blocks)) for st in net.space.stages] == [
        ("features.3", 1), ("features.5", 2), ("features.8", 3), ("features.12", 2), ("features.15", 2)]
    assert net.space.stage("features.8").blocks == ("features.8", "features.9", "features.10")
    assert net.space.stage("features.8").choices == (0, 1, 2, 3)
    r18 = slimnas.convert(torchvision.models.resnet18(num_classes=10), SIZE, depth=True)
    # layer1.0 keeps 64 channels (no downsample): skippable; every other stage's first block changes shape
    assert [(st.name, len(st.blocks)) for st in r18.space.stages] == [
        ("layer1.0", 2), ("layer2.1", 1), ("layer3.1", 1), ("layer4.1", 1)]
    # depth is opt-in: without it the space and its subnets are as they were
    plain = slimnas.convert(torchvision.models.mobilenet_v2(num_classes=10), SIZE)
    assert plain.space.stages == () and "depth" not in plain.space.max().to_dict()


@pytest.mark.parametrize("name", list(ZOO))
@torch.no_grad()
def test_dropped_blocks_export_onnx_and_flops(name, tmp_path):
    model, net = _net(name)
    x = torch.randn(2, 3, SIZE, SIZE)
    assert net.space.stages, f"{name}: no skippable blocks found"
    assert float((net(x) - model(x)).abs().max()) <= 1e-5  # every block kept: the original function
    for subnet in (_dropping(net), net.space.min()):
        net.set_subnet(subnet)
        want = net(x)
        plain = slimnas.export_subnet(net).eval()
        assert float((plain(x) - want).abs().max()) <= 1e-5
        dropped = net.space.dropped(subnet)
        assert dropped and all(type(plain.get_submodule(b)) is nn.Identity for b in dropped)
        assert not any("slimnas" in type(m).__module__ for m in plain.modules())  # nothing of slimnas is left
        flops, _ = thop.profile(copy.deepcopy(plain), inputs=(x[:1],), verbose=False, custom_ops=thop_custom_ops(plain))
        assert net.flops(subnet) == pytest.approx(flops, rel=0.01)
        path = slimnas.export_onnx(plain, tmp_path / f"{subnet.hash}.onnx", (3, SIZE, SIZE))
        assert onnx_max_abs_diff(plain, path, x[:1]) <= 1e-4
    # the space really shrinks the model: the smallest subnet holds far fewer layers and FLOPs than the original
    full = slimnas.export_subnet(net, net.space.max())
    small = slimnas.export_subnet(net, net.space.min())
    n_convs = lambda m: sum(isinstance(c, nn.Conv2d) for c in m.modules())
    assert n_convs(small) < n_convs(full)
    assert net.flops(net.space.min()) < 0.5 * net.flops(net.space.max())
    net.set_subnet(net.space.min())
    nodes_small = len(onnx.load(str(slimnas.export_onnx(slimnas.export_subnet(net).eval(), tmp_path / "min.onnx",
                                                        (3, SIZE, SIZE)))).graph.node)
    nodes_full = len(onnx.load(str(slimnas.export_onnx(full.eval(), tmp_path / "max.onnx", (3, SIZE, SIZE)))).graph.node)
    assert nodes_small < nodes_full  # the ONNX graph runs without the dropped blocks


@torch.no_grad()
def test_broadened_supernet_with_depth_is_the_original_at_its_largest():
    model, net = _net("mobilenet_v2", max_ratio=1.5)
    x = torch.randn(2, 3, SIZE, SIZE)
    assert float((net(x) - model(x)).abs().max()) <= 1e-5
    assert net.space.max().depth == {st.name: len(st.blocks) for st in net.space.stages}


@torch.no_grad()
def test_saved_export_with_dropped_blocks_loads_into_the_original_class(tmp_path):
    _, net = _net("mobilenet_v2")
    subnet = _dropping(net, seed=3)
    plain = slimnas.export_subnet(net, subnet).eval()
    path = slimnas.save_exported(plain, tmp_path / "model.pt", subnet, arch="mobilenet_v2", num_classes=10)
    raw = torch.load(path, weights_only=True)
    assert raw["slimnas"]["subnet"]["depth"] == subnet.depth
    assert set(net.space.dropped(subnet)) <= set(raw["slimnas"]["identity"])
    loaded = slimnas.load_exported(path)
    x = torch.randn(2, 3, SIZE, SIZE)
    assert type(loaded) is torchvision.models.MobileNetV2
    assert torch.equal(loaded(x), plain(x))


def test_subnets_with_depth_are_plain_json_with_a_stable_hash():
    s = Subnet({"a": 8, "b": 16}, depth={"features.5": 1})
    assert json.loads(s.to_json()) == {"widths": {"a": 8, "b": 16}, "depth": {"features.5": 1}}
    assert Subnet.from_json(s.to_json()) == s and Subnet.from_json(s.to_json()).hash == s.hash
    assert s.hash == "d7d263f765d79f78"  # the same on every machine and version
    # a subnet without depth hashes as before depth existed
    assert Subnet({"a": 8, "b": 16}).hash == "9f87cda05cb443ad"
    assert s != Subnet({"a": 8, "b": 16}) and s.replace({"a": 8}).depth == {"features.5": 1}
    assert s.without_indices() == s
    with pytest.raises(slimnas.SlimnasError, match="depth"):
        Subnet.from_dict({"widths": {"a": 8}, "depth": [1]})


def test_space_operators_cover_depth():
    net = slimnas.convert(torchvision.models.mobilenet_v2(num_classes=10), SIZE, depth=True)
    space = net.space
    assert space.dropped(space.max()) == set() and space.dropped(space.original()) == set()
    assert space.dropped(space.min()) == {b for st in space.stages for b in st.blocks}
    assert space.dropped(space.uniform(0.5)) == set()  # uniform width keeps every block
    rng = random.Random(0)
    seen = set()
    for _ in range(50):
        a, b = space.sample(rng), space.sample(rng)
        for s in (a, space.mutate(a, 0.5, rng), space.crossover(a, b, rng)):
            assert space.validate(s) == s
            seen.update(s.depth.items())
    assert seen == {(st.name, d) for st in space.stages for d in st.choices}  # every depth of every stage is reached
    # dropping keeps the first blocks of a stage
    assert space.dropped(space.max().replace(depth={"features.8": 1})) == {"features.9", "features.10"}
    with pytest.raises(slimnas.SlimnasError, match="depth 4 of stage 'features.8'"):
        space.validate(space.max().replace(depth={"features.8": 4}))
    with pytest.raises(slimnas.SlimnasError, match="unknown stages"):
        space.validate(space.max().replace(depth={"features.4": 0}))
    plain = slimnas.convert(torchvision.models.mobilenet_v2(num_classes=10), SIZE).space
    with pytest.raises(slimnas.SlimnasError, match="depth=True"):
        plain.validate(Subnet(plain.max().widths, depth={"features.3": 0}))
    # a restricted space (shrinking, bins) keeps its stages
    assert space.restricted({space.groups[0].name: space.groups[0].choices[-1:]}).stages == space.stages


def test_subnets_that_differ_only_inside_dropped_blocks_are_one_network_with_one_hash():
    """Widths (and kernels) inside a dropped block change nothing: the same outputs, FLOPs and latency. The space's
    canonical form sets them to their narrowest choice, its operators return that form, and verification keeps one row
    per network."""
    from slimnas.pipeline.verify import one_per_network

    _, net = _net("mobilenet_v2", kernel_sizes=(3, 5))
    space = net.space
    # the expansion channels of each stride-1 inverted residual (and its depthwise kernel) live only inside it; the
    # residual stream it adds to does not
    assert set(space.inner) == {b for st in space.stages for b in st.blocks}
    for b, knobs in space.inner.items():
        for k in knobs:
            if not k.startswith("kernel "):
                assert all(layer.startswith(b + ".") for layer, _ in net.graph.group(k).members)
    assert any(k.startswith("kernel features.9.") for k in space.inner["features.9"])
    stream = [g.name for g in space.groups if any(layer.startswith("features.8.") for layer, _ in net.graph.group(g.name).members)
              and g.name not in space.inner["features.8"]]
    assert stream and not set(stream) & {k for ks in space.inner.values() for k in ks}

    shallow = space.max().replace(depth={"features.8": 1})  # drops features.9 and features.10
    inner9 = [k for k in space.inner["features.9"] if not k.startswith("kernel ")]
    other = shallow.replace({g: space[g].choices[1] for g in inner9})
    assert other != shallow and other.hash != shallow.hash
    assert space.canonical(other) == space.canonical(shallow) and space.canonical(other).hash == space.canonical(shallow).hash
    assert space.unused(shallow) == set(space.inner["features.9"]) | set(space.inner["features.10"])
    assert space.canonical(space.max()) == space.max() and space.canonical(space.min()) == space.min()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        outs = []
        for s in (shallow, other):
            with net.use(s):
                outs.append(net(x))
    assert torch.equal(outs[0], outs[1])
    assert net.flops(shallow) == net.flops(other) and net.params(shallow) == net.params(other)
    # a width that the kept blocks use is not canonicalised away
    wider = shallow.replace({stream[0]: space[stream[0]].choices[0]})
    assert space.canonical(wider) != space.canonical(shallow)

    rng = random.Random(0)
    for _ in range(30):
        a, b = space.sample(rng), space.sample(rng)
        for s in (a, space.mutate(a, 0.5, rng), space.crossover(a, b, rng), space.assign(a, {"depth features.8": 0})):
            assert space.canonical(s) == s and space.validate(s) == s
    assert space.restricted({}).inner == space.inner

    rows = [shallow, other, space.max()]
    history = pd.DataFrame({"hash": [s.hash for s in rows], "subnet": [s.to_json() for s in rows], "feasible": True})
    kept = one_per_network(history, space)
    assert list(kept["hash"]) == [shallow.hash, space.max().hash]  # the first of one network's rows, the other network
    plain = slimnas.convert(torchvision.models.mobilenet_v2(num_classes=10), SIZE).space
    assert plain.inner == {} and len(one_per_network(history, plain)) == 3  # width only: one network per hash
    assert len(one_per_network(history.iloc[[0, 0, 2]], plain)) == 2


def test_cost_and_latency_terms_of_a_dropped_block_are_zero():
    """FLOPs and parameters of a dropped block vanish from the analytic counts (width matrix with block columns)."""
    _, net = _net("mobilenet_v2")
    full = net.space.max()
    one = full.replace(depth={"features.3": 0})
    block = net.model.get_submodule("features.3")
    block_params = sum(p.numel() for p in block.parameters())
    assert net.params(full) - net.params(one) == pytest.approx(block_params)
    m = net.widths_matrix([full, one])
    assert m.shape == (2, len(net.graph.groups) + sum(len(st.blocks) for st in net.space.stages))
    assert m[0, len(net.graph.groups):].min() == 1 and m[1, len(net.graph.groups):].min() == 0


def test_depth_table_predicts_dropped_blocks_at_zero(tmp_path):
    """A latency table of a depth space: a dropped block's units add nothing, and the table's calibration subnets
    (random ones among them) drop blocks; its fingerprint says the space has stages."""
    from slimnas.latency import LatencyPredictor, create_backend, profile
    from slimnas.latency.calibration_set import calibration_subnets
    from slimnas.latency.fingerprint import space_hash

    from .latency_helpers import FAST, RATIOS

    net = slimnas.convert(TinyNet().eval(), 16, ratios=RATIOS, depth=True)
    assert [st.blocks for st in net.space.stages] == [("block",)]
    assert space_hash(net) != space_hash(slimnas.convert(TinyNet().eval(), 16, ratios=RATIOS))
    table = profile(net, create_backend("onnxruntime"), str(tmp_path), "tiny", FAST,
                    model_args={"model": "tests.nets:tiny_net", "num_classes": 10, "ratios": list(RATIOS), "depth": True})
    pred = LatencyPredictor(table, net)
    full, dropped = net.space.max(), net.space.max().replace(depth={"block": 0})
    in_block = [u for u in pred.units if u.layer.startswith("block.")]
    assert in_block and all(u.block >= 0 for u in in_block)
    raw = pred.raw_by_kind([full, dropped]).sum(1)
    w = net.widths_matrix([full])
    saved = 0.0
    for u, _, ins, outs, grid in pred._lookup:
        if u.block >= 0:
            cin, cout = u.widths(w)
            saved += grid[np.searchsorted(ins, cin), np.searchsorted(outs, cout)][0]
    assert raw[0] - raw[1] == pytest.approx(saved) and saved > 0
    assert pred.predict([dropped])[0] < pred.predict([full])[0]
    assert any(net.space.dropped(s) for s in calibration_subnets(net, 8))
    rebuilt = slimnas.tables.supernet_for(table)
    assert rebuilt.space.stages == net.space.stages  # `slimnas latency validate` rebuilds the depth space


def test_inspect_lists_the_stages(capsys):
    from slimnas.cli import main

    assert main(["inspect", "mobilenet_v2", "--num-classes", "10", "--input-size", "32", "--depth",
                 "--kernel-sizes", "3,5,7"]) == 0
    out = capsys.readouterr().out
    assert "(depth) features.8" in out and "blocks kept: 0 1 2 3" in out
    assert "(kernel) features.1.conv.0.0" in out and "kernel sizes: 3 5 7 (checkpoint 3)" in out
    assert main(["inspect", "mobilenet_v2", "--kernel-sizes", "3,x"]) == 2  # one line, exit code 2
    assert "--kernel-sizes takes odd integers" in capsys.readouterr().err


def test_training_drops_the_blocks_of_the_narrowest_subnet():
    """The sandwich rule's narrowest subnet drops every skippable block: one step on it gives those blocks no gradient,
    while the widest subnet's step reaches them."""
    import contextlib

    from slimnas.data import DataConfig, load_data
    from slimnas.train import StepContext, make_strategy

    data = load_data(DataConfig("digits", image_size=16))
    x = torch.stack([data.calib[i][0] for i in range(32)])
    y = torch.tensor([data.calib[i][1] for i in range(32)])
    for widest, reached in ((False, False), (True, True)):
        torch.manual_seed(0)
        net = slimnas.convert(calibrate(TinyNet(10), (3, 16, 16)), 16, depth=True)
        st = make_strategy("sandwich", net, widest=widest, narrowest=not widest, n_random=0, distill=False)
        net.train()
        st.step(x, y, StepContext(net, lambda loss: loss.backward(), contextlib.nullcontext, lambda t: t,
                                  random.Random(0), 0.0, 0))
        grads = [p.grad for p in net.model.get_submodule("block").parameters()]
        assert any(g is not None and float(g.abs().sum()) > 0 for g in grads) == reached
        assert all(p.grad is not None for p in net.model.get_submodule("stem").parameters())


def _bsnas_window(net, seed: int, effect: float):
    """A BS-NAS strategy over ``net`` whose window holds 400 sampled subnets where only features.8 keeping 2 blocks
    matters (``effect`` nats of loss, noise 0.1)."""
    from slimnas.space import DEPTH_KNOB as DEPTH
    from slimnas.train import make_strategy
    from slimnas.train.strategies.bsnas import Record

    st = make_strategy("bsnas", net, shrink_every=1000, floor=2, score="loss")
    rng, noise = random.Random(seed), np.random.default_rng(seed)
    window = []
    for i in range(400):
        sub = st.space.sample(rng)
        loss = 1.0 + (effect if sub.depth["features.8"] == 2 else 0.0) + float(noise.normal(0, 0.1))
        window.append(Record(sub.widths, 1.0, loss, i + 1, {DEPTH + k: v for k, v in sub.depth.items()}))
    st.window = window
    return st


def test_bsnas_switches_off_a_depth_on_evidence_and_resumes_it():
    """BS-NAS shrinks over operations: a stage's depth that trains clearly worse is switched off and logged."""
    from slimnas.space import DEPTH_KNOB as DEPTH
    from slimnas.train import make_strategy

    net = slimnas.convert(torchvision.models.mobilenet_v2(num_classes=10), SIZE, depth=True)
    st = _bsnas_window(net, 0, 1.0)
    rows = st.shrink(1000)
    assert [(r["group"], r["width"]) for r in rows] == [(DEPTH + "features.8", 2)]
    assert st.space.stage("features.8").choices == (0, 1, 3) and net.space.stage("features.8").choices == (0, 1, 2, 3)
    again = make_strategy("bsnas", net, shrink_every=1000)
    again.load_state_dict(st.state_dict())  # a resumed run keeps the shrunk depths and the window's depths
    assert again.space.stage("features.8").choices == (0, 1, 3)
    assert {tuple(sorted(r.operations.items())) for r in again.window} == {tuple(sorted(r.operations.items())) for r in st.window}


def test_bsnas_shrinking_takes_evidence_only_from_subnets_that_use_a_choice_and_corrects_over_the_round():
    """Windows where only one stage's depth matters (a small effect, 0.3 nats): over 12 of them the depth is always
    switched off and no width is (per-group Bonferroni alone switched one off by chance in 5 of 12). A width inside a
    block that a record drops gets no sample from it."""
    from slimnas.space import DEPTH_KNOB as DEPTH

    net = slimnas.convert(torchvision.models.mobilenet_v2(num_classes=10), SIZE, depth=True)
    inner10 = [k for k in net.space.inner["features.10"] if not k.startswith("kernel ")]
    for seed in range(12):
        st = _bsnas_window(net, seed, 0.3)
        window = st.window
        if seed == 0:  # features.10 is used only where features.8 keeps all 3 blocks
            scores = st.scores()
            full = sum(r.operations[DEPTH + "features.8"] == 3 for r in window)
            assert 0 < full < len(window) and sum(sc.n for sc in scores[inner10[0]].values()) == full
        rows = st.shrink(1000)
        assert [(r["group"], r["width"]) for r in rows] == [(DEPTH + "features.8", 2)], seed


def test_slim_searches_and_exports_depth_and_kernels_end_to_end(tmp_path):
    """`slimnas slim` with ``space.depth`` and ``space.kernel_sizes``: the search scores subnets with and without
    TinyNet's residual block and with both kernel sizes of its depthwise conv, and the chosen one's model.pt and
    model.onnx are that subnet, its block dropped or kept and its kernel as subnet.json says."""
    import onnxruntime as ort

    from .slim_helpers import TINY_YAML, write_config
    from .slim_helpers import slimnas as cli

    text = TINY_YAML.replace("space: {ratios: [0.25, 0.5, 0.75, 1.0]}",
                             "space: {ratios: [0.25, 0.5, 0.75, 1.0], depth: true, kernel_sizes: [3, 5]}")
    assert text != TINY_YAML
    config = write_config(tmp_path, text)
    out = tmp_path / "run"
    r = cli("slim", "--config", str(config), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    subnet = Subnet.from_json((out / "subnet.json").read_text())
    assert set(subnet.depth) == {"block"} and set(subnet.kernels) == {"block.dw.0"}
    import pandas as pd

    depths = {json.loads(s).get("depth", {}).get("block") for s in pd.read_csv(out / "pareto.csv")["subnet"]}
    scored = {json.loads(line)["subnet"].get("depth", {}).get("block")
              for line in (out / "fitness.jsonl").read_text().splitlines()}
    assert {0, 1} <= scored, f"the search scored depths {scored} (Pareto front: {depths})"
    kernels = {json.loads(line)["subnet"].get("kernels", {}).get("block.dw.0")
               for line in (out / "fitness.jsonl").read_text().splitlines()}
    assert kernels and kernels <= {3, 5}, f"the search scored kernel sizes {kernels}"  # 5 is often over the budget
    model = slimnas.load_exported(out / "model.pt")
    assert type(model) is TinyNet
    assert (type(model.block) is nn.Identity) == (subnet.depth["block"] == 0)
    if subnet.depth["block"]:
        assert model.block.dw[0].kernel_size == (subnet.kernels["block.dw.0"],) * 2
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        want = model(x).numpy()
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    assert np.abs(got - want).max() <= 1e-4


# -- elastic kernels ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0", "mobilenet_v3_large", "tiny_net"])
@torch.no_grad()
def test_elastic_kernels_preserve_the_function_then_export_onnx_and_flops(name, tmp_path):
    """Broadened to 7x7 the supernet is the original, at its largest and as converted; a subnet with changed
    kernels (and dropped blocks) exports to the original class with those kernels, ONNX and thop agree."""
    torch.manual_seed(0)
    model = calibrate(ZOO[name](), (3, SIZE, SIZE))
    net = slimnas.convert(model, SIZE, depth=True, kernel_sizes=(3, 5, 7)).eval()
    assert net.space.kernels and all(k.choices[-1] == 7 for k in net.space.kernels)
    x = torch.randn(2, 3, SIZE, SIZE)
    assert float((net(x) - model(x)).abs().max()) <= 1e-5  # as converted: the largest kernels, zero borders
    net.set_subnet(net.space.max())
    assert float((net(x) - model(x)).abs().max()) <= 1e-5
    net.set_subnet(net.space.original())
    assert float((net(x) - model(x)).abs().max()) <= 1e-5
    rng = random.Random(2)
    samples = [net.space.sample(rng) for _ in range(200)]
    changed = [s for s in samples if any(v != net.space.kernel(k).kernel for k, v in s.kernels.items())]
    # a changed kernel in a block that runs, and a dropped block (TinyNet's one kernel is in its one block: either)
    both = [s for s in changed if net.space.dropped(s) and any(
        v != net.space.kernel(k).kernel and not any(k.startswith(b + ".") for b in net.space.dropped(s))
        for k, v in s.kernels.items())]
    sub = (both or changed)[0]
    for subnet in (sub, net.space.min()):
        net.set_subnet(subnet)
        want = net(x)
        plain = slimnas.export_subnet(net).eval()
        assert float((plain(x) - want).abs().max()) <= 1e-5
        for conv, k in subnet.kernels.items():
            if not any(conv.startswith(b + ".") for b in net.space.dropped(subnet)):
                assert plain.get_submodule(conv).kernel_size == (k, k)
        flops, _ = thop.profile(copy.deepcopy(plain), inputs=(x[:1],), verbose=False, custom_ops=thop_custom_ops(plain))
        assert net.flops(subnet) == pytest.approx(flops, rel=0.01)
        assert net.params(subnet) == pytest.approx(sum(p.numel() for p in plain.parameters()), rel=0.01)
        path = slimnas.export_onnx(plain, tmp_path / f"{subnet.hash}.onnx", (3, SIZE, SIZE))
        assert onnx_max_abs_diff(plain, path, x[:1]) <= 1e-4
    # the kernels change the cost: the largest kernels cost more FLOPs than the smallest at the same widths
    widest = net.space.max()
    assert net.flops(widest) > net.flops(widest.replace(kernels={k.name: 3 for k in net.space.kernels}))


@torch.no_grad()
def test_saved_export_with_changed_kernels_loads_into_the_original_class(tmp_path):
    _, net = _net("mobilenet_v2", kernel_sizes=(3, 5, 7))
    rng = random.Random(4)
    subnet = net.space.sample(rng)
    plain = slimnas.export_subnet(net, subnet).eval()
    assert {m.kernel_size for m in plain.modules() if isinstance(m, nn.Conv2d) and m.groups > 1} > {(3, 3)}
    path = slimnas.save_exported(plain, tmp_path / "model.pt", subnet, arch="mobilenet_v2", num_classes=10)
    loaded = slimnas.load_exported(path)
    x = torch.randn(2, 3, SIZE, SIZE)
    assert torch.equal(loaded(x), plain(x))


def test_kernel_choices_and_their_subnets():
    net = slimnas.convert(torchvision.models.efficientnet_b0(num_classes=10), SIZE, kernel_sizes=(3, 5))
    by = {k.name: k for k in net.space.kernels}
    assert by["features.1.0.block.0.0"].kernel == 3 and by["features.1.0.block.0.0"].choices == (3, 5)
    five = [k for k in net.space.kernels if k.kernel == 5]
    assert five and all(k.choices == (3, 5) for k in five)  # the checkpoint's 5x5 convs may shrink to their centre
    assert net.space.original().kernels == {k.name: k.kernel for k in net.space.kernels}
    rng = random.Random(0)
    drawn = {v for _ in range(20) for v in net.space.sample(rng).kernels.values()}
    mutated = {v for _ in range(20) for v in net.space.mutate(net.space.original(), 0.5, rng).kernels.values()}
    assert drawn == mutated == {3, 5}  # the search's operators reach every kernel size
    s = net.space.original().replace(kernels={five[0].name: 3})
    assert Subnet.from_json(s.to_json()) == s and json.loads(s.to_json())["kernels"][five[0].name] == 3
    with pytest.raises(slimnas.SlimnasError, match="kernel size 7"):
        net.space.validate(s.replace(kernels={five[0].name: 7}))
    with pytest.raises(slimnas.SlimnasError, match="without an elastic kernel"):
        net.space.validate(s.replace(kernels={"features.0.0": 3}))  # the stem is a dense conv
    with pytest.raises(slimnas.SlimnasError, match="odd positive"):
        slimnas.convert(torchvision.models.mobilenet_v2(num_classes=10), SIZE, kernel_sizes=(4,))
    # a centre crop: the 3x3 of a 5x5 conv is its middle
    net.set_subnet(s)
    conv = net.model.get_submodule(five[0].name)
    plain = slimnas.export_subnet(net).get_submodule(five[0].name)
    assert torch.equal(plain.weight, conv.weight[:, :, 1:4, 1:4]) and plain.padding == (1, 1)


def test_kernel_table_times_a_unit_per_kernel_size(tmp_path):
    from slimnas.latency import LatencyPredictor, create_backend, profile

    from .latency_helpers import FAST, RATIOS

    net = slimnas.convert(TinyNet().eval(), 16, ratios=RATIOS, depth=True, kernel_sizes=(3, 5))
    (k,) = net.space.kernels
    assert k.name == "block.dw.0"
    table = profile(net, create_backend("onnxruntime"), str(tmp_path), "tiny", FAST,
                    model_args={"model": "tests.nets:tiny_net", "num_classes": 10, "ratios": list(RATIOS),
                                "depth": True, "kernel_sizes": [3, 5]})
    pred = LatencyPredictor(table, net)
    units = [u for u in pred.units if u.layer == k.name]
    assert sorted(u.sig.kernel for u in units) == [(3, 3), (5, 5)]
    three, five = net.space.max().replace(kernels={k.name: 3}), net.space.max()
    raw = pred.raw_by_kind([three, five]).sum(1)
    assert raw[0] != raw[1]  # each size's own entries
    # the calibration's `blocks` term counts kept blocks only, never the kernel-area columns beside them
    dropped = five.replace(depth={"block": 0})
    assert pred.term_values([three, five, dropped], ["blocks"])["blocks"].tolist() == [1.0, 1.0, 0.0]
    assert slimnas.tables.supernet_for(table).space.kernels == net.space.kernels
    # `slimnas latency validate` on it: real subnets timed end to end, each row with its mean kernel size
    from slimnas.latency.validate import validate

    out = tmp_path / "validate"
    validate(tmp_path, slimnas.tables.supernet_for(table), samples=4, seed=1, out=out, rounds=2)
    rows = pd.read_csv(out / "validate.csv")
    assert len(rows) == 4 and set(rows["kernel_mean"]) <= {3.0, 5.0} and rows["measured_ms"].gt(0).all()


@pytest.mark.parametrize("args, message", [
    (["--kernel-sizes", "3,4"], "kernel_sizes must be odd positive integers"),
    (["--kernel-sizes", "3,x"], "--kernel-sizes takes odd integers"),
    (["--report-only"], "--report-only needs a finished run"),
])
def test_depth_latency_bench_bad_input_is_one_line_and_makes_no_folder(tmp_path, args, message):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "depth_latency.py"), *args, "--out", str(out)],
                       cwd=root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and message in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]
    assert not out.exists()
