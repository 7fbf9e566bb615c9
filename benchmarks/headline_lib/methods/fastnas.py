"""``fastnas``: NVIDIA Model-Optimizer's FastNAS pruning (``modelopt.torch.prune``, mode ``fastnas``).

FastNAS first scores every (layer, width) choice once with ``score_func`` (here: top-1 on the validation
split carved from train/, never the test split) to build a sensitivity map, then binary-searches a
sensitivity threshold under ONE constraint, FLOPs. The map does not depend on the constraint, so it is built
once in :meth:`prepare` (modelopt's own search checkpoint, resumable) and every FLOPs limit tried by the
measured-latency search reuses it. Channel counts are multiples of 8, as for the other methods (modelopt's
default is 32).
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from slimnas.evaluate import Evaluator, accuracy

from .base import Method, method, plain_copy, require

RATIOS = tuple(round(0.05 * i, 2) for i in range(1, 21))
DIVISOR = 8


def fastnas_rules() -> dict:
    conv = {"*": {"channels_ratio": RATIOS, "channel_divisor": DIVISOR}}
    feat = {"*": {"features_ratio": RATIOS, "feature_divisor": DIVISOR}}
    return {"nn.Conv2d": conv, "nn.Linear": feat, "nn.BatchNorm2d": feat}


@method
class FastNAS(Method):
    name = "fastnas"
    knob_name = "FLOPs limit (fraction of the base)"
    lo, hi = 0.05, 1.0

    @classmethod
    def unavailable(cls):
        return require("modelopt.torch.prune")

    def prepare(self) -> dict:
        p = self.ctx.profile
        self.evaluator = Evaluator(self.ctx.data.calib, self.ctx.data.val, calib_images=min(p.calib_images, 512),
                                   val_images=p.val_subset, device=self.ctx.device)
        self.sensitivity = self.shared_folder / "sensitivity.pth"  # fastnas+int8 reuses FastNAS's map
        self.shared_folder.mkdir(parents=True, exist_ok=True)
        try:
            self._prune(1.0, self.sensitivity)
        except Exception:  # a torn checkpoint from a kill: start the map again
            self.sensitivity.unlink(missing_ok=True)
            self._prune(1.0, self.sensitivity)
        import modelopt

        return {"package": f"nvidia-modelopt {modelopt.__version__}", "score": "validation top-1",
                "val_images": sum(len(y) for _, y in self.evaluator.val),
                "channels_ratio": [RATIOS[0], RATIOS[-1], 0.05], "divisor": DIVISOR}

    def _score(self, model: nn.Module) -> float:
        return accuracy(model, self.evaluator.val).top1

    def _prune(self, flops_fraction: float, checkpoint: Path) -> nn.Module:
        import modelopt.torch.prune as mtp

        model = self.fresh_base().to(self.ctx.device)
        dummy = torch.randn((1,) + tuple(self.ctx.input_shape), device=self.ctx.device)
        config = {"data_loader": self.evaluator.calib, "collect_func": lambda x: x, "score_func": self._score,
                  "checkpoint": str(checkpoint), "verbose": False}
        with open(self.shared_folder / "modelopt.log", "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model, _ = mtp.prune(model, mode=[("fastnas", fastnas_rules())],
                                     constraints={"flops": f"{100 * flops_fraction:.4f}%"}, dummy_input=dummy, config=config)
        return model

    def build(self, knob: float) -> nn.Module:
        with tempfile.TemporaryDirectory(prefix="headline-fastnas-") as tmp:
            ck = Path(tmp) / "search.pth"
            shutil.copy(self.sensitivity, ck)  # modelopt rewrites its checkpoint: keep the map intact
            model = self._prune(knob, ck)
        return plain_copy(self.ctx.base, model.cpu())
