"""Check everything a user can get wrong BEFORE the run folder exists.

:func:`prepare` loads the model, the data, the supernet run to reuse (if any), the latency table (checked
against this device, model and input shape), parses the constraints, measures the original model end to end
(a fresh process, with the reference probe, into a temporary folder) and checks that the smallest subnet can
meet every budget. Any problem is one :class:`SlimnasError` line and nothing has been written; only then does
:meth:`Plan.create_folder` make the run folder. On a rerun of the same config the folder's measurements
are reused, so the budget (and with it the search) stays exactly what it was.
"""
from __future__ import annotations

import logging
import importlib.util
import json
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from ..data import Datasets, load_data
from ..errors import SlimnasError
from ..fileio import atomic_write_text
from ..latency import LatencyPredictor
from ..latency.backends.base import Backend
from ..latency.backends.tensorrt_backend import INSTALL_HINT
from ..latency.e2e import export_subnets
from ..models import load_model
from ..search import Constraint, parse_constraints
from ..search.constraints import check_reachable, resolve_constraints
from ..supernet import ConvertConfig, Supernet, convert
from .. import paths
from .config import DEFAULT_OUT, LatencyConfig, ModelConfig, SlimConfig, absolute_paths, dump_config
from .device import export_model_onnx, make_backend, time_models
from .targets import (DEFAULT, Target, checkable_before_timing, open_target, reference_costs,
                      target_costs, target_folder)
from .schema import to_plain

logger = logging.getLogger(__name__)

CONFIG = "config.yaml"
REFERENCE = "latency/reference.json"
PROFILED_TABLE = "latency/table"
IGNORED_ON_RESUME = ("out", "search.time_limit_s", "latency.steady_pct", "latency.attempts")  # per invocation


@dataclass
class Plan:
    """A validated run: every input loaded and checked, the original model measured; nothing written yet."""

    config: SlimConfig  # resolved: seeded, a reused run's model/data/space copied in, a found table's path filled in
    out: Path
    constraints: list[Constraint]  # as the user wrote them (relative ones unresolved)
    budget: list[Constraint]  # absolute, relative ones resolved against the original model
    backend: Backend
    data: Datasets
    original: nn.Module  # the model as given (untrained when the base stage trains it)
    net: Supernet  # converted for the checks (a reused run's trained supernet)
    run: Optional[tuple]  # (spec, net, strategy, data) of a reused `slimnas train` run
    predictor: Optional[LatencyPredictor]  # None until a table is profiled into the run folder
    reference: dict  # end-to-end timing of the original and the smallest subnet, probe, costs
    resumed: bool
    measured_in: Optional[Path] = None  # temporary folder of the reference timing (copied into the run)
    speed: dict = field(default_factory=dict)  # how the predictor was set to the reference timing's speed (anchor())
    targets: list[Target] = field(default_factory=list)  # every latency target, the default (the fields above) first

    @property
    def table_path(self) -> Path:
        """The table in use: the config's, or the one profiled into the run folder."""
        t = self.config.latency.table
        return Path(t) if t is not None else self.out / PROFILED_TABLE

    @property
    def profile_table(self) -> bool:
        return self.predictor is None

    def create_folder(self, command: str = "") -> None:
        """Make the run folder and write the resolved config and the reference measurement into it."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "latency").mkdir(exist_ok=True)
        if not (self.out / CONFIG).is_file():
            atomic_write_text(self.out / CONFIG, dump_config(self.config))
        if self.measured_in is not None:
            for t in self.targets:
                src, dst = self.measured_in / t.folder, self.out / t.folder
                dst.mkdir(parents=True, exist_ok=True)
                for f in ("original.onnx", "smallest.onnx"):
                    if (src / f).is_file() and not (dst / f).is_file():
                        shutil.copy2(src / f, dst / f)
                if not (dst / "reference.json").is_file():
                    atomic_write_text(dst / "reference.json", json.dumps(t.reference, indent=1))
            shutil.rmtree(self.measured_in, ignore_errors=True)
            self.measured_in = None
        runs = json.loads((self.out / "run.json").read_text()) if (self.out / "run.json").is_file() else {"commands": []}
        runs["commands"].append(command)
        atomic_write_text(self.out / "run.json", json.dumps(runs, indent=1))


def _check_folder(out: Path, config: SlimConfig) -> bool:
    """True when ``out`` holds a run of the same config (a resume); refuse anything else that is there."""
    if out.exists() and not out.is_dir():
        raise SlimnasError(f"{out} is a file: give a folder for the run (--out)")
    if not out.is_dir() or not any(out.iterdir()):
        return False
    if not (out / CONFIG).is_file():
        raise SlimnasError(f"{out} is not empty and holds no slimnas run ({CONFIG}): choose a new or empty --out")
    from .config import load_config

    saved = _flat(to_plain(load_config(out / CONFIG)))
    now = _flat(to_plain(config))
    diff = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k) and k not in IGNORED_ON_RESUME]
    if diff:
        k = diff[0]
        raise SlimnasError(f"{out} holds a run with another config ({k} is {saved.get(k)!r} there, {now.get(k)!r} now): "
                           "rerun with its config to resume, or choose a new --out")
    return True


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and k != "options":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_tensorrt(config: SlimConfig) -> None:
    if config.export.tensorrt is not True:
        return
    if importlib.util.find_spec("tensorrt") is None:
        raise SlimnasError(f"export.tensorrt is true but {INSTALL_HINT}")
    if not torch.cuda.is_available():
        raise SlimnasError("export.tensorrt is true but there is no CUDA GPU here: TensorRT engines are built on the GPU they run on")


def _check_batches(config: SlimConfig, data: Datasets) -> None:
    n = len(data.train)
    stages = [("supernet.train", config.supernet.train)] if config.supernet.run is None else []
    stages += [("finetune.train", config.finetune.train)] + ([("base", config.base)] if config.base is not None else [])
    for name, tc in stages:
        if tc.batch_size > n:
            raise SlimnasError(f"{name}.batch_size {tc.batch_size} is larger than the training split ({n} images): lower it")


def _check_outputs(model: nn.Module, config: ModelConfig, data: Datasets) -> None:
    """The model's classifier must fit the data's classes: a 10-class model scored on 3-class data runs to the
    end with a meaningless accuracy."""
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, 3, config.input_size, config.input_size))
    if out.ndim != 2:
        raise SlimnasError(f"model {config.name} gives {tuple(out.shape)} outputs, not one score per class: "
                           "give a classifier")
    data.check_classes(int(out.shape[1]), f"the class count of model {config.name} (its outputs)")


def _check_strategy(config: SlimConfig, net: Supernet) -> None:
    """The supernet strategy, its options and the bins, checked before anything is timed or trained."""
    from ..train import make_strategy
    from ..train.layout import make_layout

    s = config.supernet
    try:
        layout = make_layout(s.bins, net)
        make_strategy(s.strategy, net, space=layout.space if layout is not None else None, **s.options)
    except SlimnasError as exc:
        raise SlimnasError(f"supernet: {exc}") from None


def _warn_untrained(config: SlimConfig) -> None:
    """Slimming a random-init model is legal (and the demo's way to start), but never silent."""
    name = config.model.name
    saved = name.endswith(paths.CHECKPOINT_SUFFIXES) and Path(name).is_file()  # a saved model carries its weights
    if config.model.weights is None and config.base is None and config.supernet.run is None and not saved:
        logger.warning(f"no model.weights (--weights) and no base: section: {name} is slimmed from its random "
            "initialisation; give its trained state_dict, or a base: section to train it first")


def _reuse_run(config: SlimConfig, device: Optional[str]) -> tuple[SlimConfig, tuple]:
    """A reused `slimnas train` run: its model, data, space and training settings replace the config's."""
    from ..train.run import load_run

    spec, net, strategy, data = load_run(config.supernet.run, device)
    config = replace(
        config, base=None, model=ModelConfig(spec.model, spec.weights, spec.num_classes, spec.input_size),
        data=replace(spec.data, image_size=spec.input_size), space=spec.space,
        supernet=replace(config.supernet, strategy=spec.strategy, options=dict(spec.strategy_options), bins=spec.bins,
                         train=spec.train, run=str(Path(config.supernet.run).resolve())))
    return config, (spec, net, strategy, data)


def anchor(predictor: LatencyPredictor, net: Supernet, reference: dict) -> tuple[LatencyPredictor, dict]:
    """A new predictor at the machine's speed of the reference timing, and how it was set: rescaled by the
    reference probe, then anchored on the original model timed end to end in that same run (the small probe does
    not follow every slowdown of a shared machine: on this project's CPU the original timed 6% and 33% above the
    probe-rescaled prediction on two occasions). Relative budgets then mean the same on both sides of the
    comparison. The predictor given is left as it was (a predictor is a value). A reference timed with another
    probe than the table's (a run folder from before its table's probe was chosen) is anchored without the rescale.
    """
    from ..latency.probe import table_probe

    same_probe = table_probe(reference) == predictor.table.probe
    rescaled = predictor.rescale(reference["probe_ms"]) if same_probe else predictor
    predicted = float(rescaled.predict([net.space.original()])[0])
    factor = reference["original"]["median_ms"] / predicted
    anchored = rescaled.at_speed(rescaled.speed * factor)
    return anchored, {"probe_factor": rescaled.speed, "anchor_factor": factor, "speed": anchored.speed,
                      "original_predicted_by_probe_ms": predicted}


def check_budget(constraints: list[Constraint], reference: dict, smallest: dict) -> list[Constraint]:
    """Resolve relative budgets against ``reference`` and refuse any the ``smallest`` subnet cannot meet."""
    reference = {k: v for k, v in reference.items() if v is not None}
    usable = [c for c in constraints if c.column in smallest and (not c.relative or c.column in reference)]
    budget = resolve_constraints(usable, reference)
    check_reachable(budget, smallest)
    return budget


def check_steady(original: dict, cfg: LatencyConfig) -> None:
    """The budget is resolved against this timing of the original: it must be steady (its even and odd rounds
    agree within ``latency.steady_pct``); :func:`.device.time_models` has already re-timed it up to
    ``latency.attempts`` times. With one round there is no repeat error to judge."""
    rep = float(original.get("repeat_pct", float("nan")))
    if cfg.rounds >= 2 and not rep < cfg.steady_pct:
        raise SlimnasError(f"the original model's timing stayed unsteady over {cfg.attempts} attempt(s) (repeat error "
                           f"{rep:.1f}%, latency.steady_pct is {cfg.steady_pct:g}%): the machine is busy; rerun when it "
                           "is quieter, or raise latency.rounds / latency.attempts")


def measure_reference(original: nn.Module, net: Supernet, backend: Backend, cfg: LatencyConfig, folder: Path,
                      budget_dtype: Optional[str] = None, probe: str = "conv") -> dict:
    """The original model and the smallest subnet, timed end to end in one fresh process with the probe.

    ``budget_dtype`` other than the backend's (fp32 on an INT8 target): the original is also timed in that dtype,
    interleaved in the same rounds (``original_fp32``: what a relative budget is a fraction of, see
    :mod:`.targets`). ``probe``: the target table's reference probe."""
    smallest = net.space.min()
    logger.info(f"timing the original model and the smallest subnet end to end on {backend.name} ({backend.config.device}, "
        f"{cfg.threads} thread(s), batch {cfg.batch}, {cfg.dtype}; fresh process)")
    folder.mkdir(parents=True, exist_ok=True)
    orig = export_model_onnx(original, folder / "original.onnx", net.input_shape, cfg.batch)
    (small,) = export_subnets(net, [smallest], folder, cfg.batch)
    small = small.rename(folder / "smallest.onnx")
    extra = budget_dtype is not None and budget_dtype != cfg.dtype
    paths, dtypes = ([orig, orig, small], [cfg.dtype, budget_dtype, cfg.dtype]) if extra else ([orig, small], None)
    timings, probe_ms, probes = time_models(paths, backend, cfg, dtypes, probe)
    o, s = timings[0], timings[-1]
    check_steady(o, cfg)
    logger.info(f"original model: {o['median_ms']:.4f} ms (quietest round's median), repeat error {o['repeat_pct']:.1f}% "
        f"(even vs odd rounds; steady below {cfg.steady_pct:g}%), spread of the round medians {o['spread_pct']:.0f}%, "
        f"timing attempt {o.get('attempt', 1)} of at most {cfg.attempts}")
    out = {"original": o, "smallest": s, "smallest_subnet": smallest.to_dict(), "probe_ms": probe_ms,
           "probe": probe, "probe_rounds_ms": probes, "backend": backend.describe(),
           "original_flops": net.flops(net.space.original()), "original_params": net.params(net.space.original())}
    if extra:
        check_steady(timings[1], cfg)
        out["original_fp32" if budget_dtype == "fp32" else f"original_{budget_dtype}"] = timings[1]
        logger.info(f"original model in {budget_dtype} (what relative budgets are fractions of): "
                    f"{timings[1]['median_ms']:.4f} ms, {o['median_ms'] / timings[1]['median_ms']:.3f}x of it in {cfg.dtype}")
    return out


def prepare(config: SlimConfig, out: Optional[Path] = None) -> Plan:
    """Validate ``config`` completely (see the module's description); nothing is written."""
    out = Path(paths.absolute(str(out or config.out or DEFAULT_OUT)))  # stored absolute: usable from anywhere
    config = replace(absolute_paths(config).seeded(), out=str(out))
    constraints = parse_constraints(config.constraints, config.latency.targets)
    if not constraints:
        raise SlimnasError("no constraint given: add one, e.g. latency<=0.5x or flops<=150M")
    _check_tensorrt(config)
    names = [DEFAULT, *config.latency.targets]
    backends = {name: make_backend(config.latency.target(name), name) for name in names}
    run = None
    if config.supernet.run is not None:
        config, run = _reuse_run(config, config.device)
        data, net = run[3], run[1]
    else:
        data = load_data(config.data)
    num_classes = config.model.num_classes or data.num_classes
    _warn_untrained(config)
    if config.model.num_classes is not None:
        data.check_classes(config.model.num_classes, "model.num_classes")
    torch.manual_seed(config.seed)
    original = load_model(config.model.name, num_classes=num_classes, weights=config.model.weights)
    _check_outputs(original, config.model, data)
    _check_batches(config, data)
    if run is None:
        net = convert(original, config.model.input_size, ConvertConfig(space=config.space))
        _check_strategy(config, net)

    # The latency table of every target: given, found among the shipped ones, or profiled into the run folder later.
    targets = [open_target(name, config.latency.target(name), backends[name], net, out / target_folder(name))
               for name in names]
    config = _with_tables(config, targets)
    resumed = _check_folder(out, config)

    # A quick check on predictions before timing anything (relative budgets need no probe where the table's dtype
    # is the budget's).
    smallest = net.space.min()
    quick = [c for c in constraints if c.metric != "latency_ms" or checkable_before_timing(c, targets)]
    check_budget(quick, target_costs(net, net.space.original(), targets), target_costs(net, smallest, targets))

    measured_in = None
    if not resumed or not all((out / t.folder / "reference.json").is_file() for t in targets):
        measured_in = Path(tempfile.mkdtemp(prefix="slimnas-reference-"))
    try:
        for t in targets:
            saved = out / t.folder / "reference.json"
            if resumed and saved.is_file():
                t.reference = json.loads(saved.read_text())
            else:
                folder = measured_in / t.folder
                t.reference = measure_reference(original, net, t.backend, t.config, folder, t.budget_dtype, t.probe)
            if t.predictor is not None:
                t.predictor, t.speed = anchor(t.predictor, net, t.reference)
        budget = check_budget(constraints, reference_costs(net, targets), target_costs(net, smallest, targets, measured=True))
    except BaseException:
        if measured_in is not None:
            shutil.rmtree(measured_in, ignore_errors=True)
        raise
    d = targets[0]
    return Plan(config, out, constraints, budget, d.backend, data, original, net, run, d.predictor, d.reference,
                resumed, measured_in, d.speed, targets)


def _with_tables(config: SlimConfig, targets: Sequence[Target]) -> SlimConfig:
    """The config with every target's table that is not profiled into the run folder filled in (config.yaml
    records which table the run used)."""
    lat = config.latency
    named = dict(lat.targets)
    for t in targets:
        if t.profiled:
            continue
        if t.default:
            lat = replace(lat, table=str(t.table))
        else:
            named[t.name] = replace(named[t.name], table=str(t.table))
    return replace(config, latency=replace(lat, targets=named))
