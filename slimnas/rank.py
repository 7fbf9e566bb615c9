"""Ranking quality of a trained supernet: Kendall's tau between its estimate of subnets' accuracy and their
accuracy after a short stand-alone fine-tune (the measure both seed papers use)."""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Optional, Sequence

import pandas as pd
from scipy.stats import kendalltau

from .data import Datasets
from .evaluate import Evaluator
from .export import export_subnet
from .progress import Progress
from .subnet import Subnet


def sample_subnets(space, k: int, seed: int = 0, include_ends: bool = True) -> list[Subnet]:
    """``k`` distinct subnets: the widest and narrowest (if asked) plus seeded random ones."""
    rng = random.Random(seed)
    out = [space.max(), space.min()][: 2 if include_ends else 0][:k]
    seen = set(out)
    tries = 0
    while len(out) < k and tries < 100 * k:
        s = space.sample(rng)
        tries += 1
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def rank(net, strategy, data: Datasets, subnets: Sequence[Subnet], finetune, evaluator: Optional[Evaluator] = None,
         arrangements: int = 1, seed: int = 0, device=None, progress: bool = False) -> tuple[pd.DataFrame, float]:
    """Score ``subnets`` with the supernet and after a stand-alone fine-tune; return the table and tau.

    ``finetune`` is a :class:`~slimnas.train.TrainConfig` for the stand-alone runs (a few hundred steps).
    With ``arrangements`` > 1 (CafeNet) the supernet's estimate of a width is its best arrangement's (min-min)
    and that arrangement is what gets exported and fine-tuned.
    """
    from .train import Trainer, make_strategy

    evaluator = evaluator or Evaluator(data.calib, data.val, device=device or "cpu", seed=seed)
    rng = random.Random(seed)
    rows = []
    bar = Progress(len(subnets), desc="rank", unit="subnet", enabled=progress)
    for sub in subnets:
        best, best_sub = evaluator.best_of(net, strategy.candidates(sub, arrangements, rng))
        model = export_subnet(net, best_sub)
        trainer = Trainer(model, make_strategy("plain", model), data, replace(finetune, progress=False, eval_images=0),
                          run_dir=None, device=device)
        trainer.fit()
        alone = evaluator.evaluate_model(trainer.model)
        rows.append({"subnet": best_sub.hash, "mflops": net.flops(best_sub) / 1e6, "params_m": net.params(best_sub) / 1e6,
                     "supernet_top1": best.top1, "standalone_top1": alone.top1, "supernet_loss": best.loss,
                     "standalone_loss": alone.loss, "arranged": bool(best_sub.indices)})
        bar.update(1)
    bar.close()
    df = pd.DataFrame(rows)
    tau = float(kendalltau(df["supernet_top1"], df["standalone_top1"]).statistic) if len(df) >= 2 else float("nan")
    return df, tau
