from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CHECKPOINT = SHARED / "checkpoints" / "cifar10_mobilenet_v2.pth"
CIFAR_TAR = SHARED / "data" / "cifar10-jpeg.tar.gz"


@torch.no_grad()
def calibrate(model: nn.Module, shape: tuple[int, ...], steps: int = 2, seed: int = 0) -> nn.Module:
    """Give BatchNorm non-trivial running statistics (as a trained model has), then switch to eval."""
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        model(torch.randn((4,) + tuple(shape), generator=g))
    return model.eval()


@pytest.fixture(scope="session")
def cifar_images() -> torch.Tensor:
    """32 real CIFAR-10 training images (normalised), read straight from the shared JPEG tarball."""
    if not CIFAR_TAR.is_file():
        pytest.skip("../shared/data/cifar10-jpeg.tar.gz not present")
    from PIL import Image
    import io

    mean = torch.tensor([0.4914, 0.4822, 0.4465])[:, None, None]
    std = torch.tensor([0.2470, 0.2435, 0.2616])[:, None, None]
    images = []
    with tarfile.open(CIFAR_TAR, "r:gz") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                img = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
                t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(32, 32, 3)
                images.append((t.permute(2, 0, 1).float() / 255 - mean) / std)
                if len(images) == 32:
                    break
    if len(images) < 32:
        pytest.skip("could not read 32 test images from the CIFAR-10 tarball")
    return torch.stack(images)
