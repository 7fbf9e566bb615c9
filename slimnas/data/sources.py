"""Data-set sources, one builder per name (a registry: adding one is one function plus one decorator)."""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SlimnasError
from .core import DataConfig, Datasets, Indexed, stratified_split, subset_indices
from .transforms import eval_transform, train_transform

SOURCES: dict[str, Callable[[DataConfig, Optional[str]], Datasets]] = {}

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SHARED_CIFAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-jpeg.tar.gz"


def source(name: str):
    """Register ``builder(config, argument)`` under ``name`` (used as ``name`` or ``name:argument``)."""

    def deco(fn):
        SOURCES[name] = fn
        return fn

    return deco


def load_data(config: DataConfig) -> Datasets:
    """The train / validation / calibration / test sets named by ``config.source``.

    It lives beside the registry it reads (not in :mod:`.core`), so that ``core`` needs nothing from here.
    """
    return resolve(config)


def resolve(config: DataConfig) -> Datasets:
    spec = config.source
    name, _, arg = spec.partition(":")
    if name in SOURCES:
        return SOURCES[name](config, arg or None)
    return SOURCES["folder"](config, spec)


def _split(config: DataConfig, labels, load, train_tf, eval_tf):
    tr, va = stratified_split(labels, config.val_fraction, config.seed, config.train_subset, config.val_subset)
    return Indexed(load, tr, train_tf), Indexed(load, va, eval_tf), Indexed(load, tr, eval_tf)


# -- digits: real handwritten digits shipped inside scikit-learn ---------------------------------------------
@source("digits")
def digits(config: DataConfig, arg: Optional[str]) -> Datasets:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels) upsampled to RGB ``image_size`` in memory.

    There is no official test split: a seeded 20% of the images is the test set, the validation split is
    carved from the rest.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - a declared dependency
        raise SlimnasError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(config.image_size, config.image_size), mode="bilinear", align_corners=False)
    x = x.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()
    y = [int(v) for v in bunch.target]
    rng = np.random.default_rng(1234)  # the test split never moves with the user's seed
    perm = rng.permutation(len(y))
    n_test = len(y) // 5
    test_idx, rest = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    mean = tuple(float(v) for v in x[rest].mean((0, 2, 3)))
    std = tuple(float(v) for v in x[rest].std((0, 2, 3)))

    def load(i: int):
        return x[i], y[i]

    train_tf = train_transform(config.image_size, mean, std, flip=False, tensor_input=True) if config.augment else \
        eval_transform(config.image_size, mean, std, tensor_input=True)
    eval_tf = eval_transform(config.image_size, mean, std, tensor_input=True)
    labels_rest = [y[i] for i in rest]
    tr, va = stratified_split(labels_rest, config.val_fraction, config.seed, config.train_subset, config.val_subset)
    tr, va = rest[tr], rest[va]
    test_idx = test_idx[subset_indices([y[i] for i in test_idx], config.test_subset, config.seed)]
    return Datasets(Indexed(load, tr, train_tf), Indexed(load, va, eval_tf), Indexed(load, tr, eval_tf),
                    Indexed(load, test_idx, eval_tf), [str(i) for i in range(10)], mean, std,
                    "scikit-learn handwritten digits (8x8 upsampled)")


# -- ImageFolder trees ---------------------------------------------------------------------------------------
def scan_folder(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes (sub-folders, sorted) and ``(path, label)`` samples of an ImageFolder tree, with clear errors."""
    if not root.exists():
        raise SlimnasError(f"data folder {root} does not exist: give an ImageFolder root (ROOT/<class>/*.jpg or ROOT/train/<class>/*.jpg)")
    if not root.is_dir():
        raise SlimnasError(f"data path {root} is a file, not a folder: give an ImageFolder root")
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise SlimnasError(f"data folder {root} has no class sub-folders: expected {root}/<class>/<image files>")
    samples = []
    for label, cls in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(root / cls, followlinks=True)):
            for f in sorted(files):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    samples.append((os.path.join(dirpath, f), label))
    if not samples:
        raise SlimnasError(f"data folder {root} has {len(classes)} class folders but no image files "
                           f"({', '.join(IMAGE_EXTENSIONS[:3])}, ...)")
    return classes, samples


def _pil_loader(samples: list[tuple[str, int]]):
    from PIL import Image

    def load(i: int):
        path, label = samples[i]
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB"), label

    return load


@source("folder")
def folder(config: DataConfig, arg: Optional[str], mean=IMAGENET_MEAN, std=IMAGENET_STD, description: str = "") -> Datasets:
    """An ImageFolder root: ``ROOT/train`` (+ ``ROOT/val`` or ``ROOT/test`` as the test set), or ``ROOT`` itself."""
    if not arg:
        raise SlimnasError("the folder source needs a path: folder:/data/imagenet")
    root = Path(arg).expanduser()
    train_root = root / "train" if (root / "train").is_dir() else root
    classes, samples = scan_folder(train_root)
    test = None
    for name in ("test", "val"):
        if train_root != root and (root / name).is_dir():
            test_classes, test_samples = scan_folder(root / name)
            if test_classes != classes:
                raise SlimnasError(f"{root / name} has classes {test_classes[:3]}... but {train_root} has {classes[:3]}...: the class folders must match")
            idx = subset_indices([s[1] for s in test_samples], config.test_subset, config.seed)
            test = Indexed(_pil_loader(test_samples), idx, eval_transform(config.image_size, mean, std))
            break
    labels = [s[1] for s in samples]
    train_tf = train_transform(config.image_size, mean, std) if config.augment else eval_transform(config.image_size, mean, std)
    tr, va, cal = _split(config, labels, _pil_loader(samples), train_tf, eval_transform(config.image_size, mean, std))
    return Datasets(tr, va, cal, test, classes, mean, std, description or f"ImageFolder {root}")


# -- CIFAR-10 ------------------------------------------------------------------------------------------------
def _cache_root(config: DataConfig) -> Path:
    return Path(config.cache_dir or os.environ.get("SLIMNAS_CACHE") or Path.home() / ".cache" / "slimnas" / "data")


def extract_once(archive: Path, cache: Path) -> Path:
    """Extract ``archive`` into ``cache/<name>-<digest>`` once; concurrent callers see either nothing or all.

    The tree is extracted into a temporary sibling folder and renamed into place (an atomic rename), so a
    killed extraction never leaves a half-filled folder that looks complete.
    """
    st = archive.stat()
    key = hashlib.sha1(f"{archive.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:12]
    dest = cache / f"{archive.name.split('.')[0]}-{key}"
    if dest.is_dir():
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=cache))
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(tmp, filter="data")
        try:
            os.rename(tmp, dest)
        except OSError:  # another process won the race: use its copy
            if not dest.is_dir():
                raise
    except tarfile.TarError as exc:
        raise SlimnasError(f"{archive} is not a readable tar archive ({exc})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _find_image_root(tree: Path) -> Path:
    """The folder holding ``train/`` inside an extracted archive (it may be nested one level)."""
    if (tree / "train").is_dir():
        return tree
    subs = [d for d in tree.iterdir() if d.is_dir()]
    for d in subs:
        if (d / "train").is_dir():
            return d
    raise SlimnasError(f"no train/ folder inside the extracted archive {tree}")


@source("cifar10")
def cifar10(config: DataConfig, arg: Optional[str]) -> Datasets:
    """CIFAR-10 from a JPEG tarball (default: ``../shared/data/cifar10-jpeg.tar.gz``) or an ImageFolder copy."""
    path = Path(arg).expanduser() if arg else SHARED_CIFAR
    if not path.exists():
        raise SlimnasError(f"CIFAR-10 not found at {path}: give cifar10:PATH (the JPEG tarball or an ImageFolder copy), "
                           "or torchvision-cifar10:ROOT")
    root = _find_image_root(extract_once(path, _cache_root(config))) if path.is_file() else path
    return folder(config, str(root), CIFAR_MEAN, CIFAR_STD, f"CIFAR-10 ({path})")


@source("torchvision-cifar10")
def torchvision_cifar10(config: DataConfig, arg: Optional[str]) -> Datasets:  # pragma: no cover - needs network
    """torchvision's CIFAR-10 (python pickles; downloaded into ROOT on first use). Never run in this project."""
    from torchvision.datasets import CIFAR10

    root = Path(arg or _cache_root(config) / "torchvision-cifar10").expanduser()
    train = CIFAR10(str(root), train=True, download=True)
    test = CIFAR10(str(root), train=False, download=True)
    size = config.image_size
    train_tf = train_transform(size, CIFAR_MEAN, CIFAR_STD) if config.augment else eval_transform(size, CIFAR_MEAN, CIFAR_STD)
    tr, va, cal = _split(config, train.targets, train.__getitem__, train_tf, eval_transform(size, CIFAR_MEAN, CIFAR_STD))
    test_idx = subset_indices(test.targets, config.test_subset, config.seed)
    return Datasets(tr, va, cal, Indexed(test.__getitem__, test_idx, eval_transform(size, CIFAR_MEAN, CIFAR_STD)),
                    list(train.classes), CIFAR_MEAN, CIFAR_STD, "torchvision CIFAR-10")
