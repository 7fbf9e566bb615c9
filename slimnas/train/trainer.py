"""The training loop: optimiser, warm-up + cosine schedule, precision, checkpoints, resume, CSV logs, DDP.

Resume is exact: data order, augmentation and subnet sampling are seeded per epoch from ``(seed, epoch)``,
checkpoints are written atomically at every epoch end with the model, optimiser and strategy state, and the
learning rate is a pure function of the global step. A run killed at any moment (kill -9 included) and
resumed continues from the last finished epoch with the same step count and schedule, and ends with the
same weights as an uninterrupted run (on the same machine and thread count).

A frozen teacher (``teacher=``, e.g. the original model before conversion) runs once per batch, in eval mode
and without gradients, for a strategy that asks for it (:meth:`Strategy.wants_teacher`); its logits reach the
strategy as ``StepContext.teacher``. It is not trained, not in the optimiser and not in the checkpoints: a
checkpoint records its digest, and a resume with another teacher is refused. Under DDP each process runs its
own copy on its own shard.
"""
from __future__ import annotations

import contextlib
import csv
import random
import time
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from ..data import Datasets, make_loader
from ..errors import SlimnasError
from ..evaluate import Evaluator
from ..fileio import atomic_path, atomic_torch_save
from ..progress import Progress
from .config import TrainConfig, lr_at
from .distributed import DistInfo, barrier, gather_strings, init_distributed, mean_across, state_digest
from .strategies import StepContext, Strategy

CHECKPOINT = "checkpoint.pt"
FORMAT = "slimnas.train/1"
_RESUME_KEYS = ("epochs", "steps_per_epoch", "batch_size", "optimizer", "lr", "weight_decay", "warmup_fraction",
                "min_lr_ratio", "seed")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on BatchNorm parameters and biases (one-dimensional tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)


class _CsvLog:
    """Append-only CSV with a fixed header; ``truncate`` drops rows beyond a resumed checkpoint."""

    def __init__(self, path: Path, fields: list[str]):
        self.path = path
        self.fields = fields

    def truncate(self, key: str, limit: int) -> None:
        if not self.path.is_file():
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        fields = list(rows[0].keys()) if rows else self.fields
        keep = [r for r in rows if r.get(key) not in (None, "") and int(float(r[key])) <= limit]
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(keep)
        self.fields = fields

    def write(self, row: dict) -> None:
        new = not self.path.is_file()
        if new:
            self.fields = list(dict.fromkeys(self.fields + list(row)))
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)


def write_table(rows: list[dict], path: Path) -> None:
    if not rows:
        return
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


class Trainer:
    """Trains ``model`` (a supernet, or a plain network with the ``plain`` strategy) with ``strategy``.

    ``run_dir`` receives ``checkpoint.pt`` (every epoch), ``steps.csv``, ``epochs.csv`` and the strategy's
    tables (``shrink.csv`` for BS-NAS; ``replicas.csv``, the per-process state digests, under DDP); ``None`` keeps
    everything in memory (short fine-tunes).
    """

    def __init__(self, model: nn.Module, strategy: Strategy, data: Datasets, config: TrainConfig,
                 run_dir: Optional[Union[str, Path]] = None, device: Optional[Union[str, torch.device]] = None,
                 teacher: Optional[nn.Module] = None):
        self.config = config
        self.data = data
        self.strategy = strategy
        device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dist: DistInfo = init_distributed(device)
        if device.type == "cuda" and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        self.model = model.to(device)
        self.forward_module: nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # a subnet that drops skippable blocks (elastic depth) leaves their parameters without gradients
            unused = bool(getattr(getattr(self.model, "space", None), "stages", ()))
            self.forward_module = DDP(self.model, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=unused)
        self.optimizer = build_optimizer(self.model, config)
        self.teacher = self._frozen(teacher) if teacher is not None and strategy.wants_teacher() else None
        if strategy.wants_teacher() and self.teacher is None:
            raise SlimnasError(f"strategy {strategy.name!r} is set to learn from a frozen teacher "
                               f"(teacher={strategy.options.teacher}) but none was given: give the original model's "
                               "weights, or set teacher none")
        self.teacher_digest = state_digest(self.teacher.state_dict(), {}) if self.teacher is not None else None
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.step = 0
        self.epoch = 0
        self.history: list[dict] = []
        per_epoch = len(data.train) // (config.batch_size * self.dist.world_size)
        if per_epoch < 1:
            raise SlimnasError(f"the training set ({len(data.train)} images) is smaller than one batch of "
                               f"{config.batch_size} x {self.dist.world_size} processes: lower --batch-size")
        self.steps_per_epoch = min(per_epoch, config.steps_per_epoch or per_epoch)
        self.total_steps = self.steps_per_epoch * config.epochs
        self._evaluator: Optional[Evaluator] = None

    # -- helpers ---------------------------------------------------------------------------------------------
    def _frozen(self, teacher: nn.Module) -> nn.Module:
        own = {id(p) for p in self.model.parameters()}
        if any(id(p) in own for p in teacher.parameters()):
            raise SlimnasError("the teacher shares weights with the model being trained: give the original model "
                               "(slimnas.convert copies it), not the supernet")
        return teacher.to(self.device).eval().requires_grad_(False)

    @torch.no_grad()
    def teacher_logits(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The frozen teacher's float32 logits for batch ``x`` (None without a teacher)."""
        if self.teacher is None:
            return None
        self.teacher.eval()  # nothing may switch it to training mode (its BN statistics stay the original's)
        with self.autocast():
            return self.teacher(x).float()

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def lr(self, step: int) -> float:
        return lr_at(step, self.total_steps, self.config)

    def autocast(self):
        if self.device.type == "cuda" and self.config.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def evaluator(self) -> Evaluator:
        if self._evaluator is None:
            c = self.config
            self._evaluator = Evaluator(self.data.calib, self.data.val, calib_images=c.calib_images,
                                        val_images=c.eval_images, device=self.device, seed=c.seed)
        return self._evaluator

    # -- checkpoints -----------------------------------------------------------------------------------------
    def checkpoint_path(self) -> Optional[Path]:
        return self.run_dir / CHECKPOINT if self.run_dir is not None else None

    def save_checkpoint(self) -> None:
        path = self.checkpoint_path()
        if path is None or not self.is_main:
            return
        atomic_torch_save({
            "format": FORMAT, "epoch": self.epoch, "step": self.step, "strategy_name": self.strategy.name,
            "config": self.config.to_dict(), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "strategy": self.strategy.state_dict(),
            "teacher_digest": self.teacher_digest,
        }, path)

    def load_checkpoint(self, path: Path) -> None:
        from ..models import read_checkpoint

        ck = read_checkpoint(path)
        if not isinstance(ck, dict) or ck.get("format") != FORMAT:
            raise SlimnasError(f"{path} is not a slimnas training checkpoint")
        if ck["strategy_name"] != self.strategy.name:
            raise SlimnasError(f"{path} was trained with strategy {ck['strategy_name']!r}, not {self.strategy.name!r}: resume with the same strategy")
        old = ck["config"]
        changed = [k for k in _RESUME_KEYS if old.get(k) != getattr(self.config, k)]
        if changed:
            raise SlimnasError(f"cannot resume {path} with different {', '.join(changed)}: the schedule would change; "
                               "use the run's original options (see config.json)")
        if ck.get("teacher_digest") != self.teacher_digest:
            had, has = ck.get("teacher_digest") is not None, self.teacher_digest is not None
            what = "another teacher" if had and has else ("a teacher" if had else "no teacher")
            raise SlimnasError(f"{path} was trained with {what} than this run gives: resume with the same teacher "
                               "(the same original weights and strategy options)")
        self.strategy.load_state_dict(ck["strategy"])
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.epoch, self.step = int(ck["epoch"]), int(ck["step"])

    @torch.no_grad()
    def _sync_buffers(self) -> None:
        """Average BatchNorm running statistics over processes (each rank's last forwards saw its own shard)."""
        if not self.dist.enabled:
            return
        for buf in self.model.buffers():
            if buf.is_floating_point():
                buf.copy_(mean_across(buf, self.dist))

    def _check_replicas(self) -> None:
        """Under DDP, every process's weights, buffers and strategy state must agree exactly at an epoch end.

        Each rank's digest goes to ``replicas.csv`` (rank 0 writes it); a disagreement is a bug, not a user
        error, and stops the run on every rank rather than training on diverged replicas.
        """
        if not self.dist.enabled:
            return
        digests = gather_strings(state_digest(self.model.state_dict(), self.strategy.state_dict()), self.dist)
        if self.is_main and self.run_dir is not None:
            log = _CsvLog(self.run_dir / "replicas.csv", ["epoch", "step", "rank", "digest"])
            for rank, d in enumerate(digests):
                log.write({"epoch": self.epoch, "step": self.step, "rank": rank, "digest": d})
        if len(set(digests)) > 1:
            raise RuntimeError(f"DDP replicas disagree after epoch {self.epoch} (state digests {digests})")

    # -- the loop --------------------------------------------------------------------------------------------
    def _report(self) -> dict[str, float]:
        out = {}
        for label, sub in self.strategy.report_subnets().items():
            res = self.evaluator().evaluate(self.model, self.strategy.finalize(sub) if sub is not None else None)
            out[f"val_top1_{label}"] = res.top1
        return out

    def fit(self, resume: bool = False) -> list[dict]:
        """Train to ``config.epochs``; with ``resume`` continue from ``run_dir/checkpoint.pt`` if it exists."""
        c = self.config
        steps_log = epochs_log = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ck = self.checkpoint_path()
            if resume and ck.is_file():
                self.load_checkpoint(ck)
            elif ck.is_file() and self.is_main:
                raise SlimnasError(f"{self.run_dir} already holds a training run: pass --resume to continue it, or use a new folder")
            steps_log = _CsvLog(self.run_dir / "steps.csv", ["step", "epoch", "lr", "loss"])
            epochs_log = _CsvLog(self.run_dir / "epochs.csv", ["epoch", "step", "lr", "train_loss", "seconds"])
            if self.is_main:
                steps_log.truncate("step", self.step)
                epochs_log.truncate("epoch", self.epoch)
                _CsvLog(self.run_dir / "replicas.csv", []).truncate("epoch", self.epoch)
        barrier(self.dist)
        bar = None
        if c.progress and self.is_main:
            bar = Progress(total=self.total_steps, initial=self.step, desc=f"train {self.strategy.name}", unit="step")
        self.model.train()
        while self.epoch < c.epochs:
            t0 = time.time()
            torch.manual_seed(c.seed * 1_000_003 + self.epoch)
            rng = random.Random(c.seed * 1_000_003 + self.epoch)
            loader = make_loader(self.data.train, c.batch_size, shuffle=True, seed=c.seed, epoch=self.epoch,
                                 drop_last=True, num_workers=c.num_workers, rank=self.dist.rank,
                                 world_size=self.dist.world_size)
            losses = []
            for i, (x, y) in enumerate(loader):
                if i >= self.steps_per_epoch:
                    break
                x, y = x.to(self.device, non_blocking=True), torch.as_tensor(y).to(self.device, non_blocking=True)
                lr = self.lr(self.step)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                self.optimizer.zero_grad(set_to_none=True)
                ctx = StepContext(self.forward_module, lambda loss: loss.backward(), self.autocast,
                                  lambda t: mean_across(t, self.dist), rng, c.label_smoothing, self.step,
                                  teacher=self.teacher_logits(x))
                metrics = self.strategy.step(x, y, ctx)
                if c.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
                self.optimizer.step()
                self.strategy.after_step(ctx)
                self.step += 1
                losses.append(metrics.get("loss", float("nan")))
                if steps_log is not None and self.is_main and (self.step % c.log_every == 0):
                    steps_log.write({"step": self.step, "epoch": self.epoch + 1, "lr": lr, **metrics})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{metrics.get('loss', float('nan')):.3f}", lr=f"{lr:.3g}")
            self.epoch += 1
            self._sync_buffers()
            self._check_replicas()
            row = {"epoch": self.epoch, "step": self.step, "lr": self.lr(max(0, self.step - 1)),
                   "train_loss": sum(losses) / max(1, len(losses))}
            if self.is_main and c.eval_images != 0:
                row.update(self._report())
            row["seconds"] = time.time() - t0
            self.history.append(row)
            if epochs_log is not None and self.is_main:
                epochs_log.write(row)
                for name, rows in self.strategy.logs().items():
                    write_table(rows, self.run_dir / f"{name}.csv")
            self.save_checkpoint()
            barrier(self.dist)
        if bar is not None:
            bar.close()
        return self.history
