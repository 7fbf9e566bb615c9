"""``torch-pruning``: Torch-Pruning's global group-magnitude pruning (L2, channel counts rounded to 8).

The knob is the kept fraction ``1 - pruning_ratio``; the classifier's outputs are never pruned.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Method, method, plain_copy, require


@method
class TorchPruning(Method):
    name = "torch-pruning"
    knob_name = "kept fraction (1 - pruning_ratio)"
    lo, hi = 0.1, 1.0

    @classmethod
    def unavailable(cls):
        return require("torch_pruning")

    def prepare(self) -> dict:
        import torch_pruning as tp

        return {"package": f"torch-pruning {getattr(tp, '__version__', '?')}", "importance": "GroupMagnitudeImportance(p=2)",
                "global_pruning": True, "round_to": 8}

    def build(self, knob: float) -> nn.Module:
        import torch_pruning as tp

        model = self.fresh_base()
        classes = self.ctx.data.num_classes
        heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == classes]
        pruner = tp.pruner.BasePruner(model, torch.randn((1,) + tuple(self.ctx.input_shape)),
                                      importance=tp.importance.GroupMagnitudeImportance(p=2), global_pruning=True,
                                      pruning_ratio=max(0.0, 1.0 - knob), ignored_layers=heads, round_to=8)
        pruner.step()
        return plain_copy(self.ctx.base, model)
