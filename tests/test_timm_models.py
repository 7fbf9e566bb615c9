"""timm models slimmed and stored: ``model.pt`` of an exported subnet loads back into timm's classes.

The exported layers are timm's own subclasses of the torch layers (a narrower ``BatchNormAct2d``, ``Conv2dSame``),
so ``layer_shapes``/``reshape_to`` must recognise subclasses and rebuild them with their exact class.
"""
from __future__ import annotations

import random

import pytest
import torch

import slimnas
from tests.conftest import calibrate

timm = pytest.importorskip("timm")

MODELS = [  # (factory as model.name takes it, input side)
    ("timm.models.mobilenetv3:mobilenetv3_large_100", 32),
    ("timm.models.efficientnet:efficientnet_b0", 48),
    ("timm.models.efficientnet:tf_efficientnet_b0", 64),  # Conv2dSame: pads itself "same"
]


@pytest.mark.parametrize("arch,size", MODELS, ids=[a.rpartition(":")[2] for a, _ in MODELS])
def test_exported_timm_subnet_loads_back_with_its_classes(arch, size, tmp_path):
    torch.manual_seed(0)
    model = calibrate(slimnas.load_model(arch, num_classes=10), (3, size, size))
    net = slimnas.convert(model, input_shape=size)
    space = net.space
    assert net.flops(space.min()) / net.flops(space.original()) < 0.3  # the space really shrinks
    subnet = space.sample(random.Random(3))
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    plain = slimnas.export_subnet(net, subnet).eval()
    full = dict(model.named_modules())
    kinds = {type(m).__name__ for n, m in plain.named_modules()
             if getattr(m, "weight", None) is not None and m.weight.shape != full[n].weight.shape}
    assert "BatchNormAct2d" in kinds  # timm's subclasses were exported narrower
    assert "Conv2dSame" in kinds or "tf_" not in arch
    path = slimnas.save_exported(plain, tmp_path / "model.pt", subnet, arch=arch, num_classes=10)
    back = slimnas.load_exported(path)
    assert [type(m) for m in back.modules()] == [type(m) for m in plain.modules()]  # exact classes kept
    with torch.no_grad():
        assert (back(x) - plain(x)).abs().max().item() <= 1e-6
