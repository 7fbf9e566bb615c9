"""Data sources: the embedded digits, ImageFolder trees written here, a CIFAR-style tarball, and the errors."""
from __future__ import annotations

import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from slimnas import SlimnasError
from slimnas.data import DataConfig, load_data, make_loader
from slimnas.data.sources import extract_once


def write_folder(root, classes=("cat", "dog", "emu"), per_class=10, size=20, ext="jpg"):
    rng = np.random.default_rng(0)
    for c_i, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.full((size, size, 3), 60 * c_i + 20, dtype=np.uint8)
            img = np.clip(base + rng.integers(0, 40, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / c / f"{i:03d}.{ext}")
    return root


def test_digits_is_real_data_split_seeded_and_disjoint():
    d = load_data(DataConfig("digits", image_size=16, seed=3))
    assert d.num_classes == 10 and len(d.train) + len(d.val) + len(d.test) == 1797
    x, y = d.val[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert set(d.train.indices).isdisjoint(d.val.indices) and set(d.train.indices).isdisjoint(d.test.indices)
    again = load_data(DataConfig("digits", image_size=16, seed=3))
    assert np.array_equal(d.val.indices, again.val.indices)
    other = load_data(DataConfig("digits", image_size=16, seed=4))
    assert not np.array_equal(d.val.indices, other.val.indices)
    assert np.array_equal(d.test.indices, other.test.indices)  # the test split never moves with the seed
    # real digits: the mean images of two classes differ far more than noise would
    imgs = {c: torch.stack([d.calib[i][0] for i in range(len(d.calib)) if d.calib[i][1] == c][:20]).mean(0) for c in (0, 1)}
    assert (imgs[0] - imgs[1]).abs().mean() > 0.2
    # per-class stratification of the validation split
    counts = np.bincount([d.val[i][1] for i in range(len(d.val))], minlength=10)
    assert counts.min() >= 10


def test_image_folder_with_test_split_and_loader_order(tmp_path):
    write_folder(tmp_path / "train")
    write_folder(tmp_path / "test", per_class=4)
    d = load_data(DataConfig(str(tmp_path), image_size=16, val_fraction=0.2))
    assert d.classes == ["cat", "dog", "emu"] and len(d.test) == 12
    assert len(d.val) == 6 and len(d.train) == 24
    x, y = d.train[0]
    assert x.shape == (3, 16, 16)
    a = [y.tolist() for _, y in make_loader(d.train, 8, shuffle=True, seed=1, epoch=2)]
    b = [y.tolist() for _, y in make_loader(d.train, 8, shuffle=True, seed=1, epoch=2)]
    c = [y.tolist() for _, y in make_loader(d.train, 8, shuffle=True, seed=1, epoch=3)]
    assert a == b and a != c
    subset = load_data(DataConfig(str(tmp_path), image_size=16, val_fraction=0.2, train_subset=9))
    assert len(subset.train) == 9 and sorted(np.bincount([subset.train[i][1] for i in range(9)])) == [3, 3, 3]


def test_cifar_style_tarball_extracts_once(tmp_path):
    src = tmp_path / "src" / "cifar"
    write_folder(src / "train", classes=("a", "b"), size=32)
    write_folder(src / "test", classes=("a", "b"), per_class=3, size=32)
    archive = tmp_path / "mini.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar")
    cache = tmp_path / "cache"
    d = load_data(DataConfig(f"cifar10:{archive}", cache_dir=str(cache)))
    assert d.classes == ["a", "b"] and len(d.test) == 6 and d.mean[0] == pytest.approx(0.4914)
    first = extract_once(archive, cache)
    assert extract_once(archive, cache) == first
    assert [p.name for p in cache.iterdir()] == [first.name]  # no temporary folders left behind


@pytest.mark.parametrize("case", ["missing", "file", "no_classes", "no_images", "unknown_tar"])
def test_data_errors_are_one_line(tmp_path, case):
    if case == "missing":
        spec = str(tmp_path / "nope")
    elif case == "file":
        (tmp_path / "f.txt").write_text("x")
        spec = str(tmp_path / "f.txt")
    elif case == "no_classes":
        spec = str(tmp_path)
    elif case == "no_images":
        (tmp_path / "train" / "cat").mkdir(parents=True)
        (tmp_path / "train" / "cat" / "notes.txt").write_text("x")
        spec = str(tmp_path)
    else:
        spec = f"cifar10:{tmp_path / 'absent.tar.gz'}"
    with pytest.raises(SlimnasError) as info:
        load_data(DataConfig(spec, cache_dir=str(tmp_path / "c")))
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_bad_config_values():
    with pytest.raises(SlimnasError):
        DataConfig(val_fraction=1.5)
    with pytest.raises(SlimnasError):
        DataConfig(image_size=2)
