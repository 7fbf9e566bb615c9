"""A training run as data: what to train, on what, how. The CLI and benchmarks build one and call :func:`train`.

``config.json`` in the run folder holds the resolved :class:`RunSpec`, so ``--resume`` and ``slimnas rank``
rebuild exactly the same supernet, data and strategy from the folder alone.
"""
from __future__ import annotations

import logging
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple, Optional, Union

import torch

from .. import paths
from ..data import DataConfig, Datasets, load_data
from ..errors import SlimnasError
from ..models import load_model
from ..space import SearchSpace, SpaceConfig
from ..supernet import ConvertConfig, Supernet, convert
from .config import TrainConfig
from .layout import BinLayout, make_layout
from .strategies import Strategy, make_strategy
from ..fileio import atomic_write_text
from .trainer import CHECKPOINT, Trainer

SPACE_START = "space_start.json"  # the candidate widths the strategy began with (bins applied)

logger = logging.getLogger(__name__)


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
    bins: Optional[str] = None  # None | "flops:N" | "latency:N:TABLE_DIR" (from `slimnas profile`) | "latency:N:TABLE.csv"
    train: TrainConfig = field(default_factory=TrainConfig)
    device: Optional[str] = None  # default: cuda when available

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        space = dict(d.get("space", {}))
        space["ratios"] = tuple(space.get("ratios", SpaceConfig().ratios))
        space["kernel_sizes"] = tuple(space.get("kernel_sizes", ()))
        return cls(**{**d, "space": SpaceConfig(**space), "data": DataConfig(**d.get("data", {})),
                      "train": TrainConfig(**d.get("train", {}))})


class Built(NamedTuple):
    net: Supernet
    strategy: Strategy
    data: Datasets
    bins: Optional[BinLayout]  # the bin layout the strategy's space comes from (None without --bins)


def absolute_paths(spec: RunSpec) -> RunSpec:
    """``spec`` with its relative paths (model file, weights, data folder, cache, bins table) made absolute
    against the working directory: ``config.json`` then works from any directory."""
    return replace(spec, model=paths.model_name(spec.model), weights=paths.weights(spec.weights), bins=paths.bins(spec.bins),
                   data=replace(spec.data, source=paths.data_source(spec.data.source),
                                cache_dir=paths.absolute(spec.data.cache_dir)))


# Settings a resume may change: how the run is shown and where it runs, not what it computes.
RESUME_FREE = ("train.progress", "train.num_workers", "device")


def resume_diff(saved: RunSpec, now: RunSpec) -> list[str]:
    """One phrase per setting that differs between the saved run and this invocation, e.g. ``train.lr 0.05 there,
    0.1 here`` (the keys in ``RESUME_FREE`` excepted)."""
    from ..search.state import settings_diff

    plain = lambda s: json.loads(json.dumps(s.to_dict(), default=list))  # noqa: E731
    a, b = plain(saved), plain(now)
    for key in RESUME_FREE:
        for d in (a, b):
            section, _, name = key.rpartition(".")
            (d.get(section, {}) if section else d).pop(name, None)
    return settings_diff(a, b)


def build(spec: RunSpec, start: Optional[Path] = None) -> Built:
    """The data, the supernet converted from the base checkpoint, and the strategy (with bins applied).

    ``start``: a run's ``space_start.json``, the space its strategy began with. A run that exists is rebuilt on
    that space, not on bins laid out again: latency bins come from a table, and a table recalibrated or profiled
    again since would lay out other widths than the supernet was trained on (its layout is then not rebuilt)."""
    data = load_data(replace(spec.data, image_size=spec.input_size))
    if spec.num_classes is not None:
        data.check_classes(spec.num_classes, "num_classes")
    num_classes = spec.num_classes or data.num_classes
    torch.manual_seed(spec.train.seed)  # layers the checkpoint does not cover (or a model without one) start the same
    model = load_model(spec.model, num_classes=num_classes, weights=spec.weights)
    outputs = _outputs(model, spec.input_size)
    if outputs is not None:
        data.check_classes(outputs, f"the class count of model {spec.model} (its outputs)")
    net = convert(model, spec.input_size, ConvertConfig(space=spec.space))
    if start is not None and start.is_file():
        bins, space = None, _read_space(start, net)
    else:
        bins = make_layout(spec.bins, net)
        space = bins.space if bins else None
    strategy = make_strategy(spec.strategy, net, space=space, **spec.strategy_options)
    return Built(net, strategy, data, bins)


def _outputs(model: torch.nn.Module, input_size: int) -> Optional[int]:
    """The classifier's output count (None when the model does not give one score vector per image)."""
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, 3, input_size, input_size))
    return int(out.shape[1]) if out.ndim == 2 else None


def train(spec: RunSpec, run_dir: Union[str, Path], resume: bool = False) -> Trainer:
    """Train a supernet as ``spec`` says, writing checkpoints and logs into ``run_dir``.

    A resume must be asked with the settings the run was started with (paths compared absolute): one that
    differs is refused, naming the settings, as a resumed search is."""
    run_dir = Path(run_dir)
    cfg = run_dir / "config.json"
    spec = absolute_paths(spec)
    if resume and cfg.is_file():
        saved = absolute_paths(RunSpec.from_dict(json.loads(cfg.read_text())))  # older runs stored them relative
        diff = resume_diff(saved, spec)
        if diff:
            raise SlimnasError(f"{run_dir} holds a run with other settings ({'; '.join(diff)}): resume it with the "
                               "settings it was started with, or train into a new --out")
        spec = replace(saved, train=replace(saved.train, progress=spec.train.progress,
                                            num_workers=spec.train.num_workers), device=spec.device)
    if spec.weights is None and not str(spec.model).endswith(paths.CHECKPOINT_SUFFIXES):
        logger.warning(f"no weights (--weights): {spec.model} is trained from its random initialisation; "
            "give its trained state_dict file to start from the trained model")
    net, strategy, data, bins = build(spec, run_dir / SPACE_START if resume else None)
    teacher = original_teacher(spec, data) if strategy.wants_teacher() else None
    trainer = Trainer(net, strategy, data, spec.train, run_dir, spec.device, teacher=teacher)
    if trainer.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not (run_dir / CHECKPOINT).is_file() or not cfg.is_file():
            atomic_write_text(cfg, json.dumps(spec.to_dict(), indent=1, default=list))
        if strategy.space is not None:
            if not resume or not (run_dir / SPACE_START).is_file():  # a resume keeps the space the run began with
                _write_space(strategy.space, run_dir / SPACE_START)
        if bins is not None:
            bins.write(run_dir)
    trainer.fit(resume=resume)
    if trainer.is_main and strategy.space is not None:
        _write_space(strategy.space, run_dir / "space_final.json")
    return trainer


def original_teacher(spec: RunSpec, data: Datasets) -> torch.nn.Module:
    """The original model (before conversion) as the frozen teacher of a ``teacher=original|both`` strategy."""
    if spec.weights is None and not str(spec.model).endswith(paths.CHECKPOINT_SUFFIXES):
        raise SlimnasError(f"strategy option teacher={spec.strategy_options.get('teacher')} learns from the original "
                           "model, but there are no weights (--weights): give its trained state_dict file, or set teacher=none")
    return load_model(spec.model, num_classes=spec.num_classes or data.num_classes, weights=spec.weights).eval()


def _read_space(path: Path, net) -> SearchSpace:
    """A space written by :func:`_write_space`, as a restriction of ``net``'s (a width it lacks is refused)."""
    try:
        choices = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SlimnasError(f"{path} cannot be read ({exc}): train the run again into a new --out") from None
    return net.space.restricted(*SearchSpace.split_knobs(choices))


def _write_space(space, path: Path) -> None:
    """The choices still switched on, per knob (BS-NAS shrinks them during training): each group's widths, and each
    stage's depths and each elastic conv's kernel sizes where the space has them."""
    atomic_write_text(path, json.dumps({k: list(c) for k, c in space.knobs()}, indent=1))


def load_run(run_dir: Union[str, Path], device: Optional[str] = None) -> tuple[RunSpec, Supernet, Strategy, Datasets]:
    """Rebuild a finished (or interrupted) run from its folder: spec, trained supernet, strategy, data."""
    run_dir = Path(run_dir)
    cfg = run_dir / "config.json"
    if not cfg.is_file() or not (run_dir / CHECKPOINT).is_file():
        raise SlimnasError(f"{run_dir} is not a training run folder (needs config.json and {CHECKPOINT}); run `slimnas train` first")
    spec = RunSpec.from_dict(json.loads(cfg.read_text()))
    net, strategy, data, _ = build(spec, run_dir / SPACE_START)
    from ..models import read_checkpoint

    ck = read_checkpoint(run_dir / CHECKPOINT)
    net.load_state_dict(ck["model"])
    strategy.load_state_dict(ck["strategy"])
    dev = torch.device(device or spec.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return spec, net.to(dev), strategy, data
