"""Standard augmentation: reflect-pad + random crop + flip for small images, RandomResizedCrop for large."""
from __future__ import annotations

from typing import Callable

from torchvision import transforms as T

SMALL = 64  # at or below this side, images are CIFAR-like: pad and crop rather than resize and crop


def train_transform(size: int, mean, std, flip: bool = True, tensor_input: bool = False) -> Callable:
    steps: list = [] if tensor_input else []
    if size <= SMALL:
        steps += [T.Resize(size, antialias=True), T.RandomCrop(size, padding=max(1, size // 8), padding_mode="reflect")]
    else:
        steps += [T.RandomResizedCrop(size, antialias=True)]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    if not tensor_input:
        steps.append(T.ToTensor())
    steps.append(T.Normalize(mean, std))
    return T.Compose(steps)


def eval_transform(size: int, mean, std, tensor_input: bool = False) -> Callable:
    if size <= SMALL:
        steps: list = [T.Resize(size, antialias=True)]
    else:
        steps = [T.Resize(int(round(size * 8 / 7)), antialias=True), T.CenterCrop(size)]
    if not tensor_input:
        steps.append(T.ToTensor())
    steps.append(T.Normalize(mean, std))
    return T.Compose(steps)
