"""Quantization-aware fine-tune for ``model.int8.onnx``: train the model as onnxruntime will run it in INT8.

onnxruntime's static quantization (:mod:`slimnas.quantize`, :data:`~slimnas.quantize.SETTINGS`) first folds each
BatchNorm into its conv, then gives every conv/linear weight one symmetric INT8 scale per output channel
(``max|w| / 127.5``) and every activation feeding a conv/linear one asymmetric UINT8 range (min/max over the
calibration images). This module simulates exactly that in torch:

- :func:`fold_batchnorm` folds the BatchNorms the same way (the fine-tune then trains the folded weights);
- :class:`FakeQuant` rounds each weight to its INT8 grid and each conv/linear input to its UINT8 grid in the
  forward pass, with the straight-through estimator in the backward pass (the activation ranges are running
  min/max, as the calibration's);
- after the fine-tune the fake quantizers are removed and the folded float model goes through the very same
  :func:`~slimnas.quantize.quantize_onnx` as post-training quantization, calibrated on the same images. Its weights
  now sit where their INT8 rounding costs little; the scales are onnxruntime's own.

torchvision's and torch.ao's QAT were not used: torch.ao's fx QAT graphs do not export to ONNX here
(``aten::copy`` is unsupported by the exporter), and their observers' conventions (7-bit ranges, their own BN
folding during training) are not the ones the deployed graph uses.
"""
from __future__ import annotations

import copy
import logging
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .errors import SlimnasError

logger = logging.getLogger(__name__)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every conv → BatchNorm pair folded into the conv, as onnxruntime's
    pre-processing does before quantizing."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(copy.deepcopy(model).eval())
    except Exception as exc:  # noqa: BLE001 - tracing a user's model can fail in many ways
        raise SlimnasError(f"the quantization-aware fine-tune needs a torch.fx-traceable model to fold its BatchNorms "
                           f"({type(exc).__name__}: {exc}); set export.int8_qat_steps: 0 for post-training "
                           "quantization") from None


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def quantize_weight(w: torch.Tensor) -> torch.Tensor:
    """``w`` rounded to symmetric INT8 with one scale per output channel (onnxruntime's per-channel weights)."""
    scale = w.detach().abs().flatten(1).amax(1).clamp_min(1e-12) / 127.5
    scale = scale.reshape((-1,) + (1,) * (w.dim() - 1))
    return _round_ste(w / scale).clamp(-128, 127) * scale


def quantize_activation(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``x`` rounded to UINT8 over ``[lo, hi]`` widened to hold 0 (onnxruntime's asymmetric activations)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-12) / 255.0
    zero = round(-lo / scale)
    return (_round_ste(x / scale) + zero).clamp(0, 255).sub(zero) * scale


_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Hardswish, nn.SiLU, nn.Sigmoid, nn.Hardsigmoid)


def _bare_outputs(model: nn.Module) -> list[str]:
    """Convs and linears whose output is quantized as it is: onnxruntime quantizes a layer's output after the
    activation it fuses, else (a linear bottleneck feeding an add, the logits) the output itself."""
    graph = getattr(model, "graph", None)
    if graph is None:
        return []
    mods = dict(model.named_modules())
    out = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), (nn.Conv2d, nn.Linear)):
            continue
        users = list(node.users)
        fused = len(users) == 1 and (
            (users[0].op == "call_module" and isinstance(mods.get(users[0].target), _ACTIVATIONS))
            or (users[0].op == "call_function" and getattr(users[0].target, "__name__", "") in
                ("relu", "relu6", "hardtanh", "hardswish", "silu", "sigmoid", "hardsigmoid", "clamp")))
        if not fused:
            out.append(node.target)
    return out


class _WeightINT8(nn.Module):
    """A parametrization: the weight as its INT8 grid computes (the float weight stays what is trained)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return quantize_weight(w)


class FakeQuant:
    """Fake INT8 quantization on every conv and linear of a (BatchNorm-folded) model, removable.

    Weights are quantized in the forward pass (a parametrization); each layer's input is quantized over the
    running min/max of what it has seen (``momentum`` of an exponential average while training; frozen in eval).
    """

    def __init__(self, model: nn.Module, momentum: float = 0.1):
        from torch.nn.utils import parametrize

        self.model = model
        self.momentum = momentum
        self.ranges: dict[str, list[float]] = {}
        self.layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
        if not self.layers:
            raise SlimnasError("the model has no conv or linear layer to quantize")
        self._hooks = [m.register_forward_pre_hook(self._input_hook(n)) for n, m in self.layers.items()]
        self._hooks += [self.layers[n].register_forward_hook(self._output_hook(n)) for n in _bare_outputs(model)]
        for m in self.layers.values():
            parametrize.register_parametrization(m, "weight", _WeightINT8())

    def _quantized(self, key: str, x: torch.Tensor, training: bool) -> torch.Tensor:
        lo, hi = float(x.detach().amin()), float(x.detach().amax())
        r = self.ranges.get(key)
        if r is None:
            r = self.ranges[key] = [lo, hi]
        elif training:
            r[0] += self.momentum * (lo - r[0])
            r[1] += self.momentum * (hi - r[1])
        return quantize_activation(x, r[0], r[1])

    def _input_hook(self, name: str):
        def hook(module: nn.Module, args):
            return (self._quantized(name, args[0], module.training),) + tuple(args[1:])
        return hook

    def _output_hook(self, name: str):
        def hook(module: nn.Module, _args, out):
            return self._quantized(f"{name}:out", out, module.training)
        return hook

    def remove(self) -> nn.Module:
        """The model without its fake quantizers: its float weights, as trained."""
        from torch.nn.utils import parametrize

        for h in self._hooks:
            h.remove()
        for m in self.layers.values():
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
        return self.model


def qat_finetune(model: nn.Module, batches: Iterable, steps: int, lr: float = 1e-4, momentum: float = 0.9,
                 teacher: Optional[nn.Module] = None, progress=None) -> tuple[nn.Module, list[float]]:
    """Fine-tune ``model`` for ``steps`` batches of ``(images, labels)`` as its INT8 graph computes.

    Returns the BatchNorm-folded float model (ready for :func:`~slimnas.quantize.quantize_onnx`) and the losses.
    With a ``teacher`` (the float model), the loss is the KL divergence to its outputs plus the cross-entropy.
    """
    if steps < 1:
        raise SlimnasError(f"the quantization-aware fine-tune needs at least 1 step, got {steps}")
    folded = fold_batchnorm(model)
    fq = FakeQuant(folded)
    folded.train()
    opt = torch.optim.SGD([p for p in folded.parameters() if p.requires_grad], lr=lr, momentum=momentum)
    losses: list[float] = []
    it = iter(batches)
    for step in range(steps):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(batches)
            x, y = next(it)
        out = folded(x)
        loss = F.cross_entropy(out, y)
        if teacher is not None:
            with torch.no_grad():
                t = teacher(x)
            loss = loss + F.kl_div(F.log_softmax(out, 1), F.log_softmax(t, 1), log_target=True, reduction="batchmean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, steps, losses[-1])
    folded.eval()
    return fq.remove(), losses
