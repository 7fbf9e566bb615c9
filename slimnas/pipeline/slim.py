"""``slim``: the whole pipeline, from a model and a budget to a measured, fine-tuned, exported smaller model.

Stages, each skipped on a rerun once its output files exist (and resumable inside where it is long):

====== ======================================================================= ===========================
stage  what                                                                    finished when it wrote
====== ======================================================================= ===========================
check  everything the user gave, before the run folder exists (:mod:`.prepare`) ``config.yaml``
latency a latency table: given, shipped, or profiled into ``latency/table``      ``latency/table/``
base   the model trained from scratch when there is no checkpoint              ``base/model.pth``
supernet supernet training (or a reused ``slimnas train`` run)                  ``supernet/space_final.json``
search evolutionary search under the budgets (:mod:`.searching`)                ``pareto.csv``
verify the best candidates timed on the device (:mod:`.verify`)                 ``verify.csv``, ``subnet.json``
finetune the chosen subnet fine-tuned stand-alone (:mod:`.finetune`)           ``model.pt``
export ``model.onnx`` (and ``model.engine``) (:mod:`.exports`)                  ``exports.json``
report ``pareto.png``, ``report.md``                                            (always rewritten)
====== ======================================================================= ===========================
"""
from __future__ import annotations

import logging
import json
import time
from pathlib import Path
from typing import Optional, Union

import pandas as pd

from ..fileio import atomic_write_text
from ..latency import profile
from ..latency.validate import device_of
from ..models import load_model
from .config import SlimConfig
from .device import open_predictor
from .exports import arch_name, write_exports
from .finetune import finetune, load_finetuned, original_accuracy
from .plot import pareto_plot
from .prepare import Plan, anchor, check_budget, prepare
from .report import write_report
from .searching import HISTORY, PARETO, UNIFORM, run_search
from ..log import run_log
from .stages import StageClock
from .targets import DEFAULT, budget_original, reference_costs, target_costs, target_rows
from .training import BASE_WEIGHTS, SUPERNET_DONE, base_accuracy, train_base, train_supernet
from .verify import load_verified, verify

RESEARCH = "research"  # the folder of a second search under the budget as verification measured it (verify.research)

logger = logging.getLogger(__name__)

EXPORTS = "exports.json"
ORIGINAL = "original.json"


def _profile(plan: Plan):
    """Profile the table of every target that has none (into the run folder), anchor its predictor on the reference
    timing, and check the budgets against the predicted smallest subnet; the default target's predictor."""
    cfg = plan.config
    model_args = {"model": cfg.model.name, "num_classes": cfg.model.num_classes or plan.data.num_classes,
                  "ratios": list(cfg.space.ratios), "divisor": cfg.space.divisor, "max_ratio": cfg.space.max_ratio,
                  **({"conv_groups": cfg.space.conv_groups} if cfg.space.conv_groups != "whole" else {}),
                  **({"depth": True} if cfg.space.depth else {}),
                  **({"kernel_sizes": list(cfg.space.kernel_sizes)} if cfg.space.kernel_sizes else {})}
    for t in plan.targets:
        if t.predictor is not None:
            continue
        if not t.default:
            logger.info(f"profiling the latency table of target {t.describe()} into {t.table}")
        profile(plan.net, t.backend, t.table, model=cfg.model.name, config=cfg.latency.profile, model_args=model_args)
        t.predictor, t.speed = anchor(open_predictor(t.table, plan.net, t.backend), plan.net, t.reference)
    d = plan.targets[0]
    plan.predictor, plan.speed = d.predictor, d.speed
    smallest = plan.net.space.min()
    check_budget(plan.constraints, reference_costs(plan.net, plan.targets), target_costs(plan.net, smallest, plan.targets))
    return d.predictor


def _profiled(plan: Plan) -> bool:
    """Every target's table exists (none is left to profile into the run folder)."""
    return all(t.predictor is not None for t in plan.targets)


def _original(plan: Plan, teacher, data, out: Path) -> dict:
    f = out / ORIGINAL
    if f.is_file():
        return json.loads(f.read_text())
    ref = plan.reference
    base = budget_original(ref)  # the original the budgets speak of (FP32 where the default target runs INT8)
    result = {**{k: base.get(k) for k in ("median_ms", "p10_ms", "p90_ms", "spread_pct", "repeat_pct")},
              "dtype": "fp32" if "original_fp32" in ref else plan.config.latency.dtype,
              "flops": ref["original_flops"], "params": ref["original_params"],
              **original_accuracy(teacher, data, plan.config.fitness, plan.config.seed)}
    atomic_write_text(f, json.dumps(result, indent=1))
    return result


def slim(config: SlimConfig, out: Optional[Union[str, Path]] = None, *, command: str = "", progress: bool = True) -> dict:
    """Run the pipeline for ``config`` into ``out`` (default ``config.out``); rerun the same to resume.

    Returns the summary written to ``report.md`` (paths, budget, measured and predicted latency, accuracies).
    """
    t0 = time.time()
    with run_log() as log:  # every slimnas record of the run, also into <run>/slim.log
        return _slim(config, out, command, progress, t0, log)


def _slim(config: SlimConfig, out: Optional[Union[str, Path]], command: str, progress: bool, t0: float, log) -> dict:
    plan = prepare(config, Path(out) if out is not None else None)
    plan.create_folder(command or "slimnas.pipeline.slim(...)")
    out, cfg = plan.out, plan.config
    log.attach(out / "slim.log")
    clock = StageClock(out)
    clock.record("check", time.time() - t0)
    num_classes = cfg.model.num_classes or plan.data.num_classes

    tables = ", ".join(str(t.table) for t in plan.targets)
    with clock.stage("latency", done=_profiled(plan),
                     what=f"the latency table(s) {tables}" if _profiled(plan) else "profiling a latency table"):
        predictor = plan.predictor if _profiled(plan) else _profile(plan)

    weights = cfg.model.weights
    if cfg.base is not None:
        with clock.stage("base", done=(out / BASE_WEIGHTS).is_file(), what="training the model from scratch"):
            weights = str(train_base(cfg, plan.data, out))

    if plan.run is not None:
        with clock.stage("supernet", done=True, what=f"the trained supernet of {cfg.supernet.run}"):
            _, net, strategy, data = plan.run
    else:
        with clock.stage("supernet", done=(out / SUPERNET_DONE).is_file(), what=f"training the supernet ({cfg.supernet.strategy})"):
            net, strategy, data = train_supernet(cfg, weights, num_classes, out)

    searched = (out / PARETO).is_file()
    with clock.stage("search", done=searched, what="evolutionary search"):
        result, fitness = run_search(net, strategy, data, predictor, plan.budget, cfg.search, cfg.fitness, out,
                                     cfg.seed, progress, targets={t.column: t.predictor for t in plan.targets[1:]},
                                     finished=searched)

    verified = load_verified(out)
    with clock.stage("verify", done=verified is not None, what="timing the best candidates on the device"):
        if verified is None:
            searches: list = []  # the n-th search again goes to its own folder, so a rerun resumes each in turn

            def research(limits: dict):
                searches.append(limits)
                return _search_again(plan, net, strategy, data, predictor, fitness, limits, progress, len(searches))

            verified = verify(net, fitness, result, plan.constraints, plan.targets, cfg.verify, out, research=research)
            atomic_write_text(out / "subnet.json", verified.chosen.to_json(indent=1))

    teacher = load_model(cfg.model.name, num_classes=num_classes, weights=weights)
    done = load_finetuned(out)
    with clock.stage("finetune", done=done is not None, what="fine-tuning the chosen subnet"):
        if done is None:
            finetune(net, verified.chosen, data, teacher, cfg.finetune, cfg.fitness, out, arch_name(cfg.model.name),
                     num_classes, cfg.device, cfg.seed)
            done = load_finetuned(out)
    model, tuned = done

    with clock.stage("export", done=(out / EXPORTS).is_file(), what="ONNX (and TensorRT)"):
        if not (out / EXPORTS).is_file():
            exports = write_exports(model, out, tuple(net.input_shape), cfg.export, cfg.latency.batch,
                                    data=data, dtype="int8" if any(t.config.dtype == "int8" for t in plan.targets)
                                    else cfg.latency.dtype)  # an INT8 target of any name: model.int8.onnx too
            atomic_write_text(out / EXPORTS, json.dumps(exports, indent=1))
        exports = json.loads((out / EXPORTS).read_text())

    original = _original(plan, teacher, data, out)
    summary = _summary(plan, predictor, result, verified, tuned, original, exports, clock, base_accuracy(out),
                       next((int(r["n"]) for r in fitness.records.values()), None))
    pareto_plot(out / "pareto.png", result.pareto, pd.read_csv(out / UNIFORM), original["median_ms"],
                original.get("val_top1"), plan.budget, verified.table[verified.table["target"] == DEFAULT], verified.row, history=pd.read_csv(out / HISTORY),
                finetuned_accuracy=tuned.get("val_top1"),
                title=f"{cfg.model.name} {cfg.model.input_size}px on {plan.backend.describe()['device_name']} "
                      f"({cfg.latency.backend}, {cfg.latency.threads} thread(s), batch {cfg.latency.batch})")
    write_report(out / "report.md", summary)
    c = summary["chosen"]
    logger.info(f"chosen subnet {c['hash']}: {c['median_ms']:.3f} ms measured, {c['ratio_to_original']:.3f}x of the original "
        f"in the same run ({', '.join(cfg.constraints)}; predicted {c['predicted_now_ms']:.3f} ms), validation top-1 "
        f"{c['val_top1']:.4f} (original {original.get('val_top1', float('nan')):.4f})")
    for t in summary["targets"][1:] if len(summary["targets"]) > 1 else []:
        logger.info(f"target {t['name']}: {t['median_ms']:.3f} ms measured, {t['ratio_to_original']:.3f}x of the original "
                    f"({t['reference']}), budget {t['budget_ms'] if t['budget_ms'] is None else round(t['budget_ms'], 4)} ms: "
                    f"{'met' if t['meets'] else 'NOT met'}")
    logger.info(f"done in {time.time() - t0:.0f} s. Outputs in {out}: {', '.join(summary['files'])}")
    return {k: v for k, v in summary.items() if k != "verify"}


def _search_again(plan: Plan, net, strategy, data, predictor, fitness, limits: dict, progress: bool, n: int = 1):
    """The evolutionary search once more, the ``n``-th time, in ``research/`` (``research-2/`` ... after it), under
    the latency budgets replaced by ``limits`` (predicted ms per cost column, as verification's measurement corrected
    them), sharing the first search's scores. The limits are kept in that folder's ``limits.json``: a rerun resumes
    this search under the same ones."""
    from dataclasses import replace

    folder = plan.out / (RESEARCH if n == 1 else f"{RESEARCH}-{n}")
    saved = folder / "limits.json"
    if saved.is_file():
        limits = json.loads(saved.read_text())
    else:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved, json.dumps(limits, indent=1))
    budget = [replace(c, limit=float(limits[c.column]), relative=False,
                      text=f"{c.text or c.describe()} corrected by measurement to {limits[c.column]:.4f} ms predicted")
              if c.metric == "latency_ms" and c.column in limits else c for c in plan.budget]
    result, _ = run_search(net, strategy, data, predictor, budget, plan.config.search, plan.config.fitness, folder,
                           plan.config.seed, progress, targets={t.column: t.predictor for t in plan.targets[1:]},
                           fitness=fitness, finished=(folder / PARETO).is_file())
    return result


def _summary(plan: Plan, predictor, result, verified, tuned: dict, original: dict, exports: dict, clock: StageClock,
             base_top1: Optional[float], images: Optional[int] = None) -> dict:
    cfg, out = plan.config, plan.out
    row = verified.row
    v = verified.table
    model = "original_fp32" if "original_fp32" in plan.reference else "original"  # the one the budget speaks of
    same_run = v[(v["round"] == row["round"]) & (v["model"] == model) & (v["target"] == DEFAULT)]
    original_now = float(same_run["median_ms"].iloc[0]) if len(same_run) else float("nan")
    chosen = {**{k: row.get(k) for k in ("hash", "median_ms", "p10_ms", "p90_ms", "spread_pct", "repeat_pct",
                                         "predicted_ms", "predicted_now_ms", "error_pct", "budget_ms",
                                         "ratio_to_original", "flops", "params")},
              "supernet_top1": row.get("accuracy"), "supernet_se": row.get("se"),
              "supernet_images": images, "estimator": cfg.fitness.estimator,
              "budget_share": row.get("budget_share"), "pick_reason": row.get("pick_reason"),
              "original_now_ms": original_now,
              "speedup": 1.0 / float(row["ratio_to_original"]), "val_top1": tuned.get("val_top1"),
              "test_top1": tuned.get("test_top1"), "val_images": tuned.get("val_images"),
              "test_images": tuned.get("test_images"), "finetune_steps": tuned.get("steps"),
              "distilled": tuned.get("distilled")}
    if chosen["budget_ms"] is not None and pd.isna(chosen["budget_ms"]):
        chosen["budget_ms"] = None
    files = [f for f in ("report.md", "model.pt", "model.onnx", "model.engine", "subnet.json", "pareto.csv",
                         "pareto.png", "verify.csv", "config.yaml") if (out / f).is_file() or f in ("report.md", "pareto.png")]
    return {
        "out": str(out), "command": " ; ".join(json.loads((out / "run.json").read_text())["commands"][-1:]),
        "budget": [c.describe() for c in plan.budget], "constraints": list(cfg.constraints),
        "targets": target_rows(plan.targets, plan.constraints, v, row),
        "original": {**original, "base_val_top1": base_top1}, "chosen": chosen, "verify": verified.table,
        "search": {"evaluations": result.evaluations, "wall_s": result.wall_s, "stopped": result.stopped,
                   "generations": getattr(result, "generations", cfg.search.generations), "pareto": len(result.pareto)},
        "stages": clock.times, "table": str(plan.table_path),
        "predictor": {"a": predictor.a, "b": predictor.b, "error_pct": predictor.error_pct, **plan.speed},
        "device": {**device_of(plan.backend)}, "files": files, "skipped": exports.get("skipped", []),
    }
