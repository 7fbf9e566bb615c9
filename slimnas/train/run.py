"""A training run as data: what to train, on what, how. The CLI and benchmarks build one and call :func:`train`.

``config.json`` in the run folder holds the resolved :class:`RunSpec`, so ``--resume`` and ``slimnas rank``
rebuild exactly the same supernet, data and strategy from the folder alone.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional, Union

import pandas as pd
import torch

from ..data import DataConfig, Datasets, load_data
from ..errors import SlimnasError
from ..models import load_model
from ..space import SearchSpace, SpaceConfig
from ..supernet import ConvertConfig, Supernet, convert
from .bins import flops_bins, latency_bins, table_latency
from .config import TrainConfig
from .strategies import Strategy, make_strategy
from ..fileio import atomic_write_text
from .trainer import CHECKPOINT, Trainer


@dataclass(frozen=True)
class RunSpec:
    """Everything a supernet training run depends on."""

    model: str  # torchvision name, package.module:factory, or a saved slimnas model
    weights: Optional[str] = None  # the base checkpoint (state_dict file)
    num_classes: Optional[int] = None  # default: the data set's class count
    input_size: int = 32  # square input side (also the data's image size)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    strategy: str = "sandwich"
    strategy_options: dict = field(default_factory=dict)  # the strategy's Options fields
    bins: Optional[str] = None  # None | "flops:N" | "latency:N:TABLE.csv" (CSV columns group,width,latency_ms)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: Optional[str] = None  # default: cuda when available

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        space = dict(d.get("space", {}))
        space["ratios"] = tuple(space.get("ratios", SpaceConfig().ratios))
        return cls(**{**d, "space": SpaceConfig(**space), "data": DataConfig(**d.get("data", {})),
                      "train": TrainConfig(**d.get("train", {}))})


def _apply_bins(spec: RunSpec, net: Supernet) -> Optional[SearchSpace]:
    if not spec.bins:
        return None
    kind, _, rest = spec.bins.partition(":")
    n_text, _, table = rest.partition(":")
    try:
        n = int(n_text or 4)
    except ValueError:
        raise SlimnasError(f"bins must look like flops:4 or latency:4:table.csv, got {spec.bins!r}") from None
    if kind == "flops":
        return flops_bins(net, n)
    if kind == "latency":
        if not table or not Path(table).is_file():
            raise SlimnasError(f"latency bins need a table: latency:{n}:PATH.csv (columns group,width,latency_ms)")
        df = pd.read_csv(table)
        missing = {"group", "width", "latency_ms"} - set(df.columns)
        if missing:
            raise SlimnasError(f"{table} lacks columns {', '.join(sorted(missing))} (need group,width,latency_ms)")
        return latency_bins(net, table_latency({(r.group, int(r.width)): float(r.latency_ms) for r in df.itertuples()}), n)
    raise SlimnasError(f"unknown bins kind {kind!r}: use flops:N or latency:N:TABLE.csv")


def build(spec: RunSpec) -> tuple[Supernet, Strategy, Datasets]:
    """The data, the supernet converted from the base checkpoint, and the strategy (with bins applied)."""
    data = load_data(replace(spec.data, image_size=spec.input_size))
    num_classes = spec.num_classes or data.num_classes
    torch.manual_seed(spec.train.seed)  # layers the checkpoint does not cover (or a model without one) start the same
    model = load_model(spec.model, num_classes=num_classes, weights=spec.weights)
    net = convert(model, spec.input_size, ConvertConfig(space=spec.space))
    strategy = make_strategy(spec.strategy, net, space=_apply_bins(spec, net), **spec.strategy_options)
    return net, strategy, data


def train(spec: RunSpec, run_dir: Union[str, Path], resume: bool = False) -> Trainer:
    """Train a supernet as ``spec`` says, writing checkpoints and logs into ``run_dir``."""
    run_dir = Path(run_dir)
    cfg = run_dir / "config.json"
    if resume and cfg.is_file():
        saved = RunSpec.from_dict(json.loads(cfg.read_text()))
        if saved.to_dict() != spec.to_dict():
            spec = saved  # resume exactly what was started
    net, strategy, data = build(spec)
    trainer = Trainer(net, strategy, data, spec.train, run_dir, spec.device)
    if trainer.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not (run_dir / CHECKPOINT).is_file() or not cfg.is_file():
            atomic_write_text(cfg, json.dumps(spec.to_dict(), indent=1, default=list))
        if strategy.space is not None:
            _write_space(strategy.space, run_dir / "space_start.json")
    trainer.fit(resume=resume)
    if trainer.is_main and strategy.space is not None:
        _write_space(strategy.space, run_dir / "space_final.json")
    return trainer


def _write_space(space, path: Path) -> None:
    """The candidate widths still switched on, per group (BS-NAS shrinks them during training)."""
    atomic_write_text(path, json.dumps({g.name: list(g.choices) for g in space.groups}, indent=1))


def load_run(run_dir: Union[str, Path], device: Optional[str] = None) -> tuple[RunSpec, Supernet, Strategy, Datasets]:
    """Rebuild a finished (or interrupted) run from its folder: spec, trained supernet, strategy, data."""
    run_dir = Path(run_dir)
    cfg = run_dir / "config.json"
    if not cfg.is_file() or not (run_dir / CHECKPOINT).is_file():
        raise SlimnasError(f"{run_dir} is not a training run folder (needs config.json and {CHECKPOINT}); run `slimnas train` first")
    spec = RunSpec.from_dict(json.loads(cfg.read_text()))
    net, strategy, data = build(spec)
    from ..models import read_checkpoint

    ck = read_checkpoint(run_dir / CHECKPOINT)
    net.load_state_dict(ck["model"])
    strategy.load_state_dict(ck["strategy"])
    dev = torch.device(device or spec.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return spec, net.to(dev), strategy, data
