"""What ``slimnas slim`` runs, as frozen dataclasses (one per section of the YAML config).

A YAML config names only what differs from the defaults below; :func:`load_config` validates every key and
value (one-line errors naming the file, line and key) and :func:`dump_config` writes the resolved config
back into the run folder.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence, Union

from .. import paths
from ..data import DataConfig
from ..errors import SlimnasError
from ..latency import ProfileConfig
from ..search import SearchConfig
from ..space import SpaceConfig
from ..train import TrainConfig
from .schema import build, dump_yaml, merge, parse_yaml, to_plain

DEFAULT_OUT = "runs/slim"  # the run folder when neither --out nor the config's out names one
Override = Union[dict, tuple[str, dict]]  # a nested mapping, or (how it was given, e.g. "--set a.b=1", the mapping)


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


RELATIVE_TO = ("fp32", "own")  # what a relative latency budget ("0.3x") on a target is a fraction of


@dataclass(frozen=True)
class TargetConfig:
    """A named latency target (``latency.targets.NAME``): another runtime the chosen subnet must meet its budget
    on, ``latency[NAME]<=...``. The timing settings (rounds, samples, steady_pct, attempts, profile) are the
    ``latency:`` section's; each target has its own latency table (given, shipped, or profiled into the run)."""

    table: Optional[str] = None  # table folder; None: a matching one in latency_tables/, else profile one into the run
    backend: str = "onnxruntime"  # onnxruntime | tensorrt
    device: str = "cpu"  # cpu | cuda
    threads: int = 1
    batch: int = 1
    dtype: str = "fp32"  # fp32 | fp16 | int8
    # a relative budget on this target ("latency[NAME]<=0.3x") is a fraction of: fp32, the original model as it runs
    # today, in FP32 on this target's backend, device, threads and batch (timed in the same process, interleaved);
    # own, the original in this target's dtype (the INT8 original for an int8 target)
    relative_to: str = "fp32"

    def __post_init__(self) -> None:
        if self.threads < 1 or self.batch < 1:
            raise SlimnasError(f"threads and batch must be at least 1, got {self.threads} and {self.batch}")
        if self.relative_to not in RELATIVE_TO:
            raise SlimnasError(f"relative_to must be {' or '.join(RELATIVE_TO)}, got {self.relative_to!r}")


@dataclass(frozen=True)
class LatencyConfig:
    """The target device: where and how the model will run, and the latency table measured there.

    This section is the *default* target (a plain ``latency<=...`` budget); ``targets`` names more
    (``latency[NAME]<=...``): the chosen subnet must meet every budget, each checked by measurement on its own
    target. A relative budget on an INT8 (or FP16) target is a fraction of the FP32 original measured on that
    target's runtime in the same run (``relative_to: fp32``), "0.3 of what I run today"; ``own``: of the
    original in the target's dtype."""

    table: Optional[str] = None  # table folder; None: a matching one in latency_tables/, else profile one into the run
    backend: str = "onnxruntime"  # onnxruntime | tensorrt (end-to-end timing runs ONNX files)
    device: str = "cpu"  # cpu | cuda
    threads: int = 1  # intra-op threads (fixed and recorded)
    batch: int = 1
    dtype: str = "fp32"  # fp32 | fp16 | int8 (onnxruntime CPU: tables, timings and model.int8.onnx quantized alike)
    rounds: int = 10  # interleaved rounds of every end-to-end timing; a model's latency is its quietest round's median
    samples: int = 100  # timed samples per model in an end-to-end timing (over all rounds)
    steady_pct: float = 5.0  # a timing whose even and odd rounds disagree by this much or more is repeated
    attempts: int = 3  # timings at most until one is steady (each twice the rounds of the last); the original's must be steady
    # fresh processes per end-to-end timing, combined per model (slimnas.latency.e2e.combine_processes): one process's
    # ratios were off by up to 20% on a shared 2-core VM while its own rounds agreed (benchmarks/results/timing_processes/)
    processes: int = 3
    profile: ProfileConfig = field(default_factory=ProfileConfig)  # how a table is built when none fits
    relative_to: str = "fp32"  # fp32 | own: what a relative budget is a fraction of (see TargetConfig.relative_to)
    targets: dict[str, TargetConfig] = field(default_factory=dict)  # more targets by name (latency[NAME]<=...)

    def __post_init__(self) -> None:
        if self.threads < 1 or self.batch < 1:
            raise SlimnasError(f"threads and batch must be at least 1, got {self.threads} and {self.batch}")
        if self.relative_to not in RELATIVE_TO:
            raise SlimnasError(f"relative_to must be {' or '.join(RELATIVE_TO)}, got {self.relative_to!r}")
        from ..search.constraints import DEFAULT_TARGET, TARGET_NAME

        for name in self.targets:
            if not TARGET_NAME.match(name) or name == DEFAULT_TARGET:
                raise SlimnasError(f"latency.targets: {name!r} cannot name a target: use letters, digits and _ "
                                   f"(not {DEFAULT_TARGET!r}, the latency: section's own), e.g. int8_t1")
        if self.rounds < 1:
            raise SlimnasError(f"rounds must be at least 1, got {self.rounds}")
        if self.processes < 1:
            raise SlimnasError(f"processes must be at least 1, got {self.processes}")
        if self.samples < 30:
            raise SlimnasError(f"samples must be at least 30, got {self.samples}")
        if not (self.steady_pct >= 0 and math.isfinite(self.steady_pct)):
            raise SlimnasError(f"steady_pct must be a percentage >= 0, got {self.steady_pct}")
        if self.attempts < 1:
            raise SlimnasError(f"attempts must be at least 1, got {self.attempts}")
        _check_profile(self.profile)


    def target(self, name: Optional[str] = None) -> "LatencyConfig":
        """The latency config of target ``name`` (None or ``default``: this section without its targets): a named
        target's runtime with this section's timing settings."""
        if name in (None, "default"):
            return replace(self, targets={})
        if name not in self.targets:
            raise SlimnasError(f"no latency target {name!r}: latency.targets defines {', '.join(self.targets) or 'none'}")
        t = self.targets[name]
        return replace(self, table=t.table, backend=t.backend, device=t.device, threads=t.threads, batch=t.batch,
                       dtype=t.dtype, relative_to=t.relative_to, targets={})


def _check_profile(p: ProfileConfig) -> None:
    """The table-building settings (``latency.profile``), checked where the YAML is read."""
    t, e = p.timing, p.e2e
    finite = math.isfinite
    checks = [("profile.grid_step", p.grid_step, p.grid_step >= 1, "at least 1"),
              ("profile.refine_tol", p.refine_tol, p.refine_tol > 0 and finite(p.refine_tol), "positive"),
              ("profile.probe_every_s", p.probe_every_s, p.probe_every_s > 0 and finite(p.probe_every_s), "positive"),
              ("profile.passes", p.passes, p.passes >= 1, "at least 1"),
              ("profile.calibration_subnets", p.calibration_subnets, p.calibration_subnets >= 2, "at least 2"),
              ("profile.timing.warmup_ms", t.warmup_ms, t.warmup_ms >= 0 and finite(t.warmup_ms), ">= 0"),
              ("profile.timing.samples", t.samples, t.samples >= 1, "at least 1"),
              ("profile.timing.min_sample_ms", t.min_sample_ms, t.min_sample_ms > 0 and finite(t.min_sample_ms), "positive"),
              ("profile.timing.max_inner", t.max_inner, t.max_inner >= 1, "at least 1"),
              ("profile.e2e.warmup_ms", e.warmup_ms, e.warmup_ms >= 0 and finite(e.warmup_ms), ">= 0")]
    for name, value, ok, want in checks:
        if not ok:
            raise SlimnasError(f"{name} must be {want}, got {value}")


@dataclass(frozen=True)
class SupernetConfig:
    """The supernet: trained here from the model, or reused from a `slimnas train` run folder."""

    run: Optional[str] = None  # a finished `slimnas train` run to reuse (its model, data and space are used)
    strategy: str = "cafenet"  # sandwich | cafenet | bsnas
    options: dict = field(default_factory=dict)  # the strategy's options, e.g. {k: 3}
    bins: Optional[str] = None  # None | flops:N | latency:N:TABLE.csv
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=0.01))
    # The frozen teacher of every sampled subnet: the original model (model.weights, or the base: section's result),
    # in eval mode, once per batch. none | original (the teacher instead of in-place distillation) | both (the teacher
    # plus in-place distillation from the widest). Its weight and temperature: options teacher_alpha (0.5) and
    # temperature (4); options.teacher, where given (a reused run's), wins. Without weights it is none.
    # Chosen by benchmarks/results/supernet_curve (README there).
    teacher: str = "original"

    def __post_init__(self) -> None:
        from ..train.strategies.sandwich import TEACHERS

        if self.teacher not in TEACHERS:
            raise SlimnasError(f"teacher must be one of {', '.join(TEACHERS)}, got {self.teacher!r}")


@dataclass(frozen=True)
class FitnessConfig:
    """How search scores a subnet: supernet accuracy on the validation split after BN recalibration."""

    calib_images: int = 512  # training images that re-estimate BatchNorm statistics per subnet
    val_images: Optional[int] = None  # validation images scored (None: the whole validation split)
    batch_size: int = 128
    arrangements: Optional[int] = None  # CafeNet arrangements tried per subnet (None: the strategy's k)
    # the per-image value a score averages: top1 (1 if right) or loss (minus the cross-entropy); chosen by
    # benchmarks/fitness_estimators.py (see benchmarks/results/fitness_estimators/)
    estimator: str = "top1"

    def __post_init__(self) -> None:
        if self.estimator not in ("top1", "loss"):
            raise SlimnasError(f"fitness.estimator must be top1 or loss, got {self.estimator!r}")
        if self.calib_images < 1 or self.batch_size < 1:
            raise SlimnasError(f"calib_images and batch_size must be positive, got {self.calib_images} and {self.batch_size}")
        if self.val_images is not None and self.val_images < 1:
            raise SlimnasError(f"val_images must be at least 1 (or null: the whole validation split), got {self.val_images}")
        if self.arrangements is not None and self.arrangements < 1:
            raise SlimnasError(f"arrangements must be at least 1, got {self.arrangements}")


@dataclass(frozen=True)
class VerifyConfig:
    """On-device verification of the search's Pareto candidates nearest the budget."""

    top_k: int = 4  # candidates timed per round: the widest that fit the budget, and the best-scoring
    rounds: int = 3  # rounds before giving up (a round follows one whose feasible candidates left budget unused)
    # a narrower candidate is picked over a wider one only if its score is higher by more than this many paired
    # standard errors (about a one-sided 2.5% chance that a tie passes for a win)
    margin_se: float = 2.0
    # a pick below this share of the latency budget starts another round with candidates closer to the budget
    fill: float = 0.95
    # searches again (at most this many times) when a round's candidates measured off their predictions by more than
    # research_tol as a median (none met the budget, or the pick left it unused): the evolutionary search runs once
    # more under the budget as corrected by that measurement, so the candidates are the best ones at the real budget
    # rather than the first search's leftovers on the far side of it (on a VM whose table predicted the searched
    # shapes 12-15% fast, the fallback picks scored 0.35-0.40 on the validation split where the search's best scored
    # 0.54, benchmarks/results/headline/)
    research: int = 1
    research_tol: float = 0.03
    # searches again (at most this many times) when a pick leaves the budget unused (below ``fill``, no evidence for a
    # narrower one) and no scored candidate is predicted between it and the budget as measurement corrected it: the
    # round that should fill the budget would otherwise have nothing to time (in a 0.5x headline run the pick stayed at
    # 93% for that reason, benchmarks/results/headline/ladder-xeon/)
    fill_search: int = 1
    # the machine state a relative budget is meant in: the original's latency on the default target (ms, the quietest
    # round's median, as verify.csv's original rows) when the budget was set; None: each round is taken in whatever
    # state the machine is in. A model's ratio to the original moves with the machine's state, not only with noise
    # (on a 2-core VM slower states raised every ratio, 2.4% with the original 1.3% slow, while quieter ones left them
    # as they were; a round timed while the original was 3.6% slow put a pick at 93% of a budget it filled to 91% in
    # the budget's state, benchmarks/results/headline/ladder-xeon/): a round whose original is more than
    # ``state_tol`` slower than this waits ``state_poll_s`` and is timed again, within
    # ``state_wait_s`` over the whole verification, and verify.csv records how far off each round was (state_off_pct)
    state_ms: Optional[float] = None
    state_tol: float = 0.01
    state_wait_s: float = 1800.0
    state_poll_s: float = 120.0

    def __post_init__(self) -> None:
        if self.state_ms is not None and not self.state_ms > 0:
            raise SlimnasError(f"verify.state_ms must be a latency in ms > 0 (or null for no state gate), got {self.state_ms}")
        if not (self.state_tol >= 0 and self.state_wait_s >= 0 and self.state_poll_s > 0):
            raise SlimnasError("verify.state_tol and verify.state_wait_s must be >= 0 and verify.state_poll_s > 0, got "
                               f"{self.state_tol}, {self.state_wait_s} and {self.state_poll_s}")
        if self.top_k < 1 or self.rounds < 1:
            raise SlimnasError(f"top_k and rounds must be at least 1, got {self.top_k} and {self.rounds}")
        if not self.margin_se >= 0:
            raise SlimnasError(f"verify.margin_se must be >= 0, got {self.margin_se}")
        if self.fill_search < 0:
            raise SlimnasError(f"verify.fill_search must be >= 0, got {self.fill_search}")
        if self.research < 0 or not self.research_tol >= 0:
            raise SlimnasError(f"verify.research and verify.research_tol must be >= 0, got {self.research} and {self.research_tol}")
        if not 0.0 < self.fill <= 1.0:
            raise SlimnasError(f"verify.fill must be in (0, 1], got {self.fill}")


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
    # model.int8.onnx (onnxruntime static QDQ quantization, slimnas.quantize.SETTINGS), also written whenever
    # latency.dtype is int8; its test accuracy is measured in onnxruntime. With TensorRT: model.int8.engine too.
    int8: bool = False
    int8_calibration: int = 256  # training images (evaluation transform) the INT8 ranges are calibrated on
    # > 0: a quantization-aware fine-tune of that many steps (slimnas.qat: BatchNorm folded, weights and activations
    # fake-quantized as onnxruntime will run them) before model.int8.onnx is quantized; exports.json reports the
    # post-training graph's test accuracy beside it.
    int8_qat_steps: int = 0
    int8_qat_lr: float = 5e-4  # SGD (momentum 0.9) learning rate of that fine-tune
    int8_qat_batch: int = 64

    def __post_init__(self) -> None:
        if self.int8_qat_steps < 0 or self.int8_qat_batch < 1 or not self.int8_qat_lr > 0:
            raise SlimnasError("export.int8_qat_steps must be >= 0 (0: no quantization-aware fine-tune), "
                               "int8_qat_batch >= 1 and int8_qat_lr > 0")
        if not 7 <= self.opset <= 23:  # what torch.onnx exports (ONNX_MIN_OPSET..ONNX_MAX_OPSET of torch 2.x)
            raise SlimnasError(f"opset must be an ONNX opset between 7 and 23, got {self.opset}")
        if self.int8_calibration < 1:
            raise SlimnasError(f"export.int8_calibration must be at least 1 training image, got {self.int8_calibration}")


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

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise SlimnasError(f"seed must be >= 0, got {self.seed}")

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


def resolve_paths(data: dict, base: Union[str, Path, None] = None) -> dict:
    """The path values of a (partial) plain config made absolute against ``base`` (default: the working
    directory): the config file's folder for a YAML file, the working directory for flags and ``--set``."""
    def get(section: str, key: str):
        sec = data.get(section)
        return sec.get(key) if isinstance(sec, dict) else None

    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    fixes = {("model", "name"): paths.model_name, ("model", "weights"): paths.weights,
             ("latency", "table"): paths.absolute, ("data", "source"): paths.data_source,
             ("data", "cache_dir"): paths.absolute, ("supernet", "run"): paths.absolute, ("supernet", "bins"): paths.bins}
    for (section, key), fix in fixes.items():
        value = get(section, key)
        if isinstance(value, str) and value:
            out[section][key] = fix(value, base)
    targets = get("latency", "targets")
    if isinstance(targets, dict):  # each named target's table, like latency.table
        fixed = {}
        for name, t in targets.items():
            t = dict(t) if isinstance(t, dict) else t
            if isinstance(t, dict) and isinstance(t.get("table"), str) and t["table"]:
                t["table"] = paths.absolute(t["table"], base)
            fixed[name] = t
        out["latency"]["targets"] = fixed
    if isinstance(out.get("out"), str) and out["out"]:
        out["out"] = paths.absolute(out["out"], base)
    return out


def absolute_paths(config: SlimConfig, base: Union[str, Path, None] = None) -> SlimConfig:
    """``config`` with every relative path made absolute against ``base`` (default: the working directory)."""
    return build(SlimConfig, resolve_paths(to_plain(config), base))


def _labelled(overrides: Sequence[Override]) -> list[tuple[str, dict]]:
    """Each override as (how it was given, its mapping with paths made absolute against the working directory)."""
    out = []
    for o in overrides:
        label, mapping = o if isinstance(o, tuple) else ("command line", o)
        out.append((label, resolve_paths(mapping)))
    return out


def _build_blamed(data: dict, source: str, lines: Optional[dict], overrides: list[tuple[str, dict]]) -> SlimConfig:
    """``overrides`` laid over ``data`` and built; a mistake is blamed on the file (with its line) only when the
    file alone has it, else on the first override that brings it in (e.g. ``--set search.populaton=4``)."""
    merged = data
    for _, o in overrides:
        merged = merge(merged, o)
    try:
        return build(SlimConfig, merged, source, lines)
    except SlimnasError:
        build(SlimConfig, data, source, lines)
        acc = data
        for label, o in overrides:
            acc = merge(acc, o)
            build(SlimConfig, acc, label)
        raise


def load_config(path: Union[str, Path], overrides: Sequence[Override] = ()) -> SlimConfig:
    """Read a YAML config (missing keys keep their defaults, paths are relative to the file) and lay ``overrides``
    (nested mappings, or ``(label, mapping)`` pairs whose label names them in errors) over it."""
    path = Path(path)
    if not path.is_file():
        raise SlimnasError(f"config file {path} does not exist")
    data, lines = parse_yaml(path.read_text(), str(path))
    data = resolve_paths(data, path.resolve().parent)
    return _build_blamed(data, str(path), lines, _labelled(overrides))


def with_overrides(config: SlimConfig, overrides: Sequence[Override], source: str = "command line") -> SlimConfig:
    return _build_blamed(to_plain(config), source, None, _labelled(overrides))


def dump_config(config: SlimConfig) -> str:
    return dump_yaml(config)
