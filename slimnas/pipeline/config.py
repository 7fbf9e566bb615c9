"""What ``slimnas slim`` runs, as frozen dataclasses (one per section of the YAML config).

A YAML config names only what differs from the defaults below; :func:`load_config` validates every key and
value (one-line errors naming the file, line and key) and :func:`dump_config` writes the resolved config
back into the run folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence, Union

from ..data import DataConfig
from ..errors import SlimnasError
from ..latency import ProfileConfig
from ..search import SearchConfig
from ..space import SpaceConfig
from ..train import TrainConfig
from .schema import build, dump_yaml, load_yaml, merge, parse_yaml, to_plain


@dataclass(frozen=True)
class ModelConfig:
    """The model to slim."""

    name: str = "mobilenet_v2"  # torchvision name, package.module:factory, or a saved slimnas model file
    weights: Optional[str] = None  # its trained state_dict file (None: train it first, see the base section)
    num_classes: Optional[int] = None  # classifier outputs (default: the data set's class count)
    input_size: int = 224  # square input side in pixels (also the data's image size)

    def __post_init__(self) -> None:
        if self.input_size < 8:
            raise SlimnasError(f"input_size must be at least 8 pixels, got {self.input_size}")
        if self.num_classes is not None and self.num_classes < 2:
            raise SlimnasError(f"num_classes must be at least 2, got {self.num_classes}")


@dataclass(frozen=True)
class LatencyConfig:
    """The target device: where and how the model will run, and the latency table measured there."""

    table: Optional[str] = None  # table folder; None: a matching one in latency_tables/, else profile one into the run
    backend: str = "onnxruntime"  # onnxruntime | tensorrt (end-to-end timing runs ONNX files)
    device: str = "cpu"  # cpu | cuda
    threads: int = 1  # intra-op threads (fixed and recorded)
    batch: int = 1
    dtype: str = "fp32"  # fp32 | fp16
    rounds: int = 10  # interleaved rounds of every end-to-end timing; a model's latency is its quietest round's median
    samples: int = 100  # timed samples per model in an end-to-end timing (over all rounds)
    profile: ProfileConfig = field(default_factory=ProfileConfig)  # how a table is built when none fits

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise SlimnasError(f"rounds must be at least 1, got {self.rounds}")
        if self.samples < 30:
            raise SlimnasError(f"samples must be at least 30, got {self.samples}")


@dataclass(frozen=True)
class SupernetConfig:
    """The supernet: trained here from the model, or reused from a `slimnas train` run folder."""

    run: Optional[str] = None  # a finished `slimnas train` run to reuse (its model, data and space are used)
    strategy: str = "cafenet"  # sandwich | cafenet | bsnas
    options: dict = field(default_factory=dict)  # the strategy's options, e.g. {k: 3}
    bins: Optional[str] = None  # None | flops:N | latency:N:TABLE.csv
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=0.01))


@dataclass(frozen=True)
class FitnessConfig:
    """How search scores a subnet: supernet accuracy on the validation split after BN recalibration."""

    calib_images: int = 512  # training images that re-estimate BatchNorm statistics per subnet
    val_images: Optional[int] = None  # validation images scored (None: the whole validation split)
    batch_size: int = 128
    arrangements: Optional[int] = None  # CafeNet arrangements tried per subnet (None: the strategy's k)

    def __post_init__(self) -> None:
        if self.calib_images < 1 or self.batch_size < 1:
            raise SlimnasError("calib_images and batch_size must be positive")
        if self.arrangements is not None and self.arrangements < 1:
            raise SlimnasError(f"arrangements must be at least 1, got {self.arrangements}")


@dataclass(frozen=True)
class VerifyConfig:
    """On-device verification of the search's Pareto candidates nearest the budget."""

    top_k: int = 4  # candidates timed per round, most accurate first
    rounds: int = 3  # rounds of ever narrower candidates before giving up

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.rounds < 1:
            raise SlimnasError("top_k and rounds must be at least 1")


@dataclass(frozen=True)
class FinetuneConfig:
    """The final stand-alone fine-tune of the chosen subnet."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=0.005))
    distill: bool = True  # knowledge distillation from the original model
    temperature: float = 4.0  # softening of the distillation targets
    alpha: float = 0.5  # weight of the distillation term (1 - alpha: cross-entropy with the labels)

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise SlimnasError(f"alpha must be in [0, 1], got {self.alpha}")
        if not self.temperature > 0:
            raise SlimnasError(f"temperature must be positive, got {self.temperature}")


@dataclass(frozen=True)
class ExportConfig:
    """What the run folder receives besides model.pt."""

    onnx: bool = True  # model.onnx, checked against onnxruntime
    tensorrt: Optional[bool] = None  # model.engine; None: where TensorRT and a GPU are present, else skipped
    fp16: bool = False  # build the TensorRT engine in FP16
    opset: int = 17


@dataclass(frozen=True)
class SlimConfig:
    """Everything ``slimnas slim`` needs. ``seed`` seeds the data split, every training run and the search."""

    model: ModelConfig = field(default_factory=ModelConfig)
    base: Optional[TrainConfig] = None  # train the model from scratch first (when there is no checkpoint)
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    constraints: tuple[str, ...] = ("latency<=0.5x",)  # e.g. latency<=5ms, latency<=0.6x, flops<=150M, params<=1.2M
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    seed: int = 0
    device: Optional[str] = None  # torch device for training and scoring (default: cuda when available)
    out: Optional[str] = None  # run folder (default: runs/slim)

    def seeded(self) -> "SlimConfig":
        """The config with ``seed`` copied into every section that has one, and the data at the model's size."""
        s = self.seed
        return replace(
            self,
            data=replace(self.data, seed=s, image_size=self.model.input_size),
            base=replace(self.base, seed=s) if self.base is not None else None,
            supernet=replace(self.supernet, train=replace(self.supernet.train, seed=s)),
            search=replace(self.search, seed=s),
            finetune=replace(self.finetune, train=replace(self.finetune.train, seed=s)),
        )


def config_from_dict(data: dict, source: str = "config", lines: Optional[dict] = None) -> SlimConfig:
    return build(SlimConfig, data, source, lines)


def load_config(path: Union[str, Path], overrides: Sequence[dict] = ()) -> SlimConfig:
    """Read a YAML config (missing keys keep their defaults) and lay ``overrides`` (nested mappings) over it."""
    if not overrides:
        return load_yaml(SlimConfig, path)
    path = Path(path)
    if not path.is_file():
        raise SlimnasError(f"config file {path} does not exist")
    data, lines = parse_yaml(path.read_text(), str(path))
    for o in overrides:
        data = merge(data, o)
    return build(SlimConfig, data, str(path), lines)


def with_overrides(config: SlimConfig, overrides: Sequence[dict], source: str = "command line") -> SlimConfig:
    data = to_plain(config)
    for o in overrides:
        data = merge(data, o)
    return build(SlimConfig, data, source)


def dump_config(config: SlimConfig) -> str:
    return dump_yaml(config)
