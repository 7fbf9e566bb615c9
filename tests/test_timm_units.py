"""Latency units of real timm models: what a runtime runs for each searchable layer.

timm's ``BatchNormAct2d`` (a BatchNorm2d subclass that reads ``x.shape`` and applies its own activation) folds
into the conv before it; ``Conv2dSame`` pads its input itself, so its unit sees the layer's real input with that
padding (uneven at stride 2), not the padded tensor with none; grouped convs whose group count follows the width
(RegNet) are units of their own. Each unit's workload graph must run in onnxruntime.
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import slimnas
from slimnas.latency.units import candidate_pairs, output_shape, unit_onnx, unit_torch, units_of
from slimnas.supernet import ConvertConfig

timm = pytest.importorskip("timm")

MODELS = [("mobilenetv3_large_100", 32, False), ("tf_efficientnet_b0", 32, False), ("regnetx_002", 32, True)]


def _net(name: str, size: int, grouped: bool):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    return slimnas.convert(model, input_shape=size, config=ConvertConfig(grouped=grouped))


def _module_inputs(net) -> dict[str, list[tuple[int, ...]]]:
    """The input shape each conv/linear module receives, per call (before any padding it does itself)."""
    seen: dict[str, list] = {}
    hooks = [m.register_forward_pre_hook(lambda m, a, n=n: seen.setdefault(n, []).append(tuple(a[0].shape)))
             for n, m in net.model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net.model.eval()(torch.zeros((1,) + tuple(net.input_shape)))
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("name,size,grouped", MODELS, ids=[m[0] for m in MODELS])
def test_timm_units_cover_every_searchable_layer_with_its_bn_act_and_real_input(name, size, grouped):
    net = _net(name, size, grouped)
    graph = net.graph
    units = units_of(net)
    searchable = {n for n, s in graph.layers.items() if s.kind in ("conv", "dwconv", "gconv", "linear")}
    assert searchable and searchable <= {u.layer for u in units}
    if grouped:
        assert any(s.kind == "gconv" for s in graph.layers.values())
        assert any(u.sig.group_width > 1 for u in units)
    inputs = _module_inputs(net)
    calls = {}
    for c in graph.calls:
        calls.setdefault(c.name, []).append(c)
    n_bn = 0
    for u in units:
        module = net.model.get_submodule(u.layer)
        call = calls[u.layer].pop(0)
        if u.sig.kind != "linear":
            assert u.sig.hw == inputs[u.layer].pop(0)[2:4], u.layer  # the layer's real input, before its own pad
            assert u.sig.out_hw() == tuple(call.out_shape[2:4]), u.layer
        if getattr(u.sig, "group_width", 0):
            assert module.groups > 1 and u.sig.group_width == module.weight.shape[1]
        after = [net.model.get_submodule(a) for a in u.absorbed]
        bns = [m for m in after if isinstance(m, nn.BatchNorm2d)]
        assert u.sig.bn == bool(bns)
        n_bn += u.sig.bn
        if bns and hasattr(bns[0], "act") and not isinstance(bns[0].act, nn.Identity):  # BatchNormAct2d's own act
            assert u.sig.act and bns[0].act in after, u.layer
    assert n_bn >= len([m for m in net.model.modules() if isinstance(m, nn.BatchNorm2d)]) * 0.9
    if name.startswith("tf_"):
        stem = next(u for u in units if u.layer == "conv_stem")
        assert stem.sig.pads == (0, 0, 1, 1) and stem.sig.hw == (size, size)


@pytest.mark.parametrize("name,size,grouped", MODELS, ids=[m[0] for m in MODELS])
def test_timm_unit_workloads_run_in_onnxruntime(name, size, grouped):
    net = _net(name, size, grouped)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sigs = {}
    for u in units_of(net):
        sigs.setdefault(u.sig.key, (u.sig, candidate_pairs(u, net)))
    for sig, pairs in sigs.values():
        for cin, cout in {pairs[0], pairs[-1]}:
            session = ort.InferenceSession(unit_onnx(sig, cin, cout), opts, providers=["CPUExecutionProvider"])
            x = np.random.default_rng(0).standard_normal(session.get_inputs()[0].shape).astype(np.float32)
            y = session.run(None, {"x": x})[0]
            assert y.shape == output_shape(sig, cout), sig.key
            with torch.no_grad():  # the torch backend's workload has the same shape
                assert tuple(unit_torch(sig, cin, cout)(torch.from_numpy(x)).shape) == y.shape, sig.key


def test_conv2d_same_unit_computes_what_the_timm_layer_computes():
    """The stem unit of tf_efficientnet_b0 (Conv2dSame, stride 2, BatchNormAct2d with SiLU), run in onnxruntime
    with its own random weights, equals timm's layers given the same weights on the same (unpadded) input."""
    import onnx
    from onnx import numpy_helper
    from timm.layers import BatchNormAct2d, Conv2dSame

    net = _net("tf_efficientnet_b0", 32, False)
    stem = next(u for u in units_of(net) if u.layer == "conv_stem")
    data = unit_onnx(stem.sig, 3, 16)
    w = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in onnx.load_from_string(data).graph.initializer}
    conv = Conv2dSame(3, 16, 3, stride=2, bias=False)
    bn = BatchNormAct2d(16, eps=1e-5, act_layer=nn.SiLU).eval()
    with torch.no_grad():
        conv.weight.copy_(w["W"])
        for attr, key in (("weight", "bn_g"), ("bias", "bn_b"), ("running_mean", "bn_m"), ("running_var", "bn_v")):
            getattr(bn, attr).copy_(w[key])
        x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        want = bn(conv(x)).numpy()
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4
