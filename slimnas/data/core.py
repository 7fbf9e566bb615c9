"""The data-set contract: a config, the split sets it yields, and deterministic loaders."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import SlimnasError


@dataclass(frozen=True)
class DataConfig:
    """Which images, at which size, split how."""

    source: str = "digits"  # digits | cifar10 | cifar10:PATH | torchvision-cifar10:ROOT | an ImageFolder root
    image_size: int = 32  # square side of the network input in pixels
    val_fraction: float = 0.1  # share of train/ held out (per class, seeded) for validation
    seed: int = 0  # seed of the validation split and of the training subset
    train_subset: Optional[int] = None  # keep only this many training images (per-class balanced; quick runs)
    val_subset: Optional[int] = None  # keep only this many validation images
    test_subset: Optional[int] = None  # keep only this many test images
    augment: bool = True  # random crop + flip on the training set
    cache_dir: Optional[str] = None  # where archives are extracted (default: ~/.cache/slimnas/data)

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise SlimnasError(f"val_fraction must be between 0 and 1 (exclusive), got {self.val_fraction}")
        if self.image_size < 8:
            raise SlimnasError(f"image_size must be at least 8 pixels, got {self.image_size}")
        for name in ("train_subset", "val_subset", "test_subset"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise SlimnasError(f"{name} must be at least 1 (or null: all images), got {getattr(self, name)}")
        if self.seed < 0:
            raise SlimnasError(f"seed must be >= 0, got {self.seed}")


@dataclass
class Datasets:
    """The splits of one data set. ``calib`` holds the training images with the evaluation transform."""

    train: Dataset
    val: Dataset
    calib: Dataset
    test: Optional[Dataset]
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def check_classes(self, count: int, what: str) -> None:
        """Refuse a model whose class count (``what``, e.g. ``model.num_classes``) is not the data's: its scores
        would be a wrong answer presented as a result."""
        if count == self.num_classes:
            return
        names = ", ".join(self.classes[:12]) + (", ..." if self.num_classes > 12 else "")
        raise SlimnasError(f"{what} is {count} but the data has {self.num_classes} classes ({names}): give a model and "
                           f"checkpoint for these {self.num_classes} classes, or data with the model's {count}")


def stratified_split(labels: Sequence[int], val_fraction: float, seed: int,
                     train_subset: Optional[int] = None, val_subset: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split of indices into (train, val); optional balanced subsets of each."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_val = max(1, int(round(len(idx) * val_fraction)))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return _balanced(train, train_subset, rng), _balanced(val, val_subset, rng)


def _balanced(per_class: list[np.ndarray], limit: Optional[int], rng: np.random.Generator) -> np.ndarray:
    """Interleave classes so that the first ``limit`` indices are balanced; return them sorted."""
    if limit is None:
        return np.sort(np.concatenate(per_class))
    order = []
    longest = max(len(a) for a in per_class)
    for i in range(longest):
        order.extend(int(a[i]) for a in per_class if i < len(a))
    return np.sort(np.asarray(order[:limit], dtype=np.int64))


def subset_indices(labels: Sequence[int], limit: Optional[int], seed: int) -> np.ndarray:
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed + 1)
    per_class = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        per_class.append(idx)
    return _balanced(per_class, limit, rng)


class Indexed(Dataset):
    """Items ``indices`` of a sample list read by ``load`` and passed through ``transform``."""

    def __init__(self, load: Callable[[int], tuple], indices: Sequence[int], transform: Optional[Callable] = None):
        self.load = load
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, label = self.load(int(self.indices[i]))
        if self.transform is not None:
            image = self.transform(image)
        return image, label


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                drop_last: bool = False, num_workers: int = 0, rank: int = 0, world_size: int = 1) -> DataLoader:
    """A loader whose order depends only on ``(seed, epoch)`` (and the rank's shard): resumable exactly.

    With ``world_size > 1`` every rank reads its own shard of the same seeded permutation, as
    ``DistributedSampler`` does.
    """
    if len(dataset) == 0:
        raise SlimnasError("the data set is empty: nothing to load")
    if shuffle:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(len(dataset), generator=g)
    else:
        order = torch.arange(len(dataset))
    if world_size > 1:
        per_rank = len(order) // world_size
        order = order[rank * per_rank:(rank + 1) * per_rank]
    return DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(), drop_last=drop_last,
                      num_workers=num_workers, persistent_workers=False)
