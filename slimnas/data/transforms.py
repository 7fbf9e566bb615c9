"""Standard augmentation: reflect-pad + random crop + flip for small images, RandomResizedCrop for large.

The evaluation transform is described by :class:`InputSpec`, which is also what ``model.pt`` and
``model.onnx`` record: a deployment that follows the spec feeds the model exactly as it was scored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torchvision import transforms as T

SMALL = 64  # at or below this side, images are CIFAR-like: pad and crop rather than resize and crop


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the network input at evaluation (and in deployment).

    RGB pixels scaled to [0, 1] (divided by 255); the shorter side resized to ``resize`` (bilinear, antialiased,
    the longer side ``int(resize * long / short)``); a centred ``size`` x ``size`` crop; ``(x - mean) / std`` per
    channel; laid out NCHW.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def resize(self) -> int:
        """The shorter side before the centre crop: the crop itself for small images, 8/7 of it otherwise."""
        return self.size if self.size <= SMALL else int(round(self.size * 8 / 7))

    def to_dict(self) -> dict[str, Any]:
        return {"input_shape": [3, self.size, self.size], "layout": "NCHW", "color": "RGB", "scale": 1 / 255,
                "resize": self.resize, "resize_side": "shorter", "interpolation": "bilinear", "crop": self.size,
                "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std],
                "preprocessing": (f"RGB pixels / 255; shorter side resized to {self.resize} (bilinear); centre crop "
                                  f"{self.size}x{self.size}; (x - mean) / std per channel; NCHW float32")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InputSpec":
        return cls(int(d["crop"]), tuple(d["mean"]), tuple(d["std"]))


def train_transform(size: int, mean, std, flip: bool = True, tensor_input: bool = False) -> Callable:
    steps: list = []
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
    """The transform :class:`InputSpec` describes (a square crop at every size, so any aspect ratio batches)."""
    spec = InputSpec(size, tuple(mean), tuple(std))
    steps: list = [T.Resize(spec.resize, antialias=True), T.CenterCrop(size)]
    if not tensor_input:
        steps.append(T.ToTensor())
    steps.append(T.Normalize(mean, std))
    return T.Compose(steps)
