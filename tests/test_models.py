"""Model intake and its one-line errors."""
from __future__ import annotations

import pytest
import torch
import torchvision

import slimnas
from tests.nets import TinyNet


def test_names_factories_and_modules():
    assert type(slimnas.load_model("resnet18", num_classes=7)) is torchvision.models.ResNet
    assert slimnas.load_model("resnet18", num_classes=7).fc.out_features == 7
    assert type(slimnas.load_model("tests.nets:tiny_net", num_classes=5)) is TinyNet
    own = TinyNet()
    assert slimnas.load_model(own) is own


def test_state_dict_file_and_wrapped_checkpoints(tmp_path):
    src = torchvision.models.mobilenet_v2(num_classes=10)
    torch.save(src.state_dict(), tmp_path / "plain.pth")
    torch.save({"arch": "mobilenet_v2", "num_classes": 10,
                "state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "ddp.pt")
    x = torch.randn(1, 3, 32, 32)
    want = src.eval()(x)
    a = slimnas.load_model("mobilenet_v2", num_classes=10, weights=str(tmp_path / "plain.pth"))
    b = slimnas.load_model(str(tmp_path / "ddp.pt"))
    assert torch.equal(a(x), want) and torch.equal(b(x), want)


def test_unknown_name_suggests_close_names():
    with pytest.raises(slimnas.SlimnasError, match="unknown model name 'mobilenetv2': did you mean mobilenet_v2"):
        slimnas.load_model("mobilenetv2")


def test_checkpoint_for_another_class_count_names_the_key(tmp_path):
    torch.save(torchvision.models.mobilenet_v2(num_classes=10).state_dict(), tmp_path / "c10.pth")
    with pytest.raises(slimnas.SlimnasError, match=r"classifier\.1\.weight is \(10, 1280\).*pass num_classes=10"):
        slimnas.load_model("mobilenet_v2", weights=str(tmp_path / "c10.pth"))


def test_checkpoint_for_another_architecture_names_the_keys(tmp_path):
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(slimnas.SlimnasError, match="does not fit MobileNetV2: .*missing keys features"):
        slimnas.load_model("mobilenet_v2", num_classes=10, weights=str(tmp_path / "r18.pth"))


@pytest.mark.parametrize("content", [b"", b"this is not a checkpoint", b"PK\x03\x04broken zip"])
def test_corrupt_files_are_refused(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(slimnas.SlimnasError, match="bad.pth"):
        slimnas.load_model("mobilenet_v2", weights=str(path))


def test_pickled_modules_are_refused(tmp_path):
    torch.save(TinyNet(), tmp_path / "pickled.pt")
    with pytest.raises(slimnas.SlimnasError, match="pickled Python objects"):
        slimnas.load_model("tests.nets:tiny_net", weights=str(tmp_path / "pickled.pt"))


def test_missing_file_and_unnamed_checkpoint(tmp_path):
    with pytest.raises(slimnas.SlimnasError, match="does not exist"):
        slimnas.load_model("mobilenet_v2", weights=str(tmp_path / "nope.pth"))
    torch.save(TinyNet().state_dict(), tmp_path / "anon.pth")
    with pytest.raises(slimnas.SlimnasError, match="does not say which architecture"):
        slimnas.load_model(str(tmp_path / "anon.pth"))


def test_weights_name_with_another_class_count_is_refused():
    """torchvision weights fix the class count: a different num_classes is an error, not silently dropped."""
    with pytest.raises(slimnas.SlimnasError, match=r"IMAGENET1K_V1 .*1000 classes.*num_classes=10"):
        slimnas.build_model("mobilenet_v2", num_classes=10, weights="IMAGENET1K_V1")
    with pytest.raises(slimnas.SlimnasError, match="unknown weights 'NOPE' for mobilenet_v2: .*IMAGENET1K_V1"):
        slimnas.build_model("mobilenet_v2", weights="NOPE")
