"""The headline run, stage by stage, each stage's result cached on disk so a rerun skips finished work.

    base checkpoint ─► base ONNX, measured ─► budgets (fractions of the base's measured latency)
    per method: prepare once ─► per budget: search (by measurement) ─► the same fine-tune ─► test top-1
    every final model + the base: one interleaved fresh-process timing run ─► meets-budget checks ─► report

Searches do not depend on the fine-tune recipe, so fine-tuned models, their scores and the closing timing run
are kept per recipe and seed (``<method>/<budget>/<recipe label>/seed<N>/``, ``final_timing-<recipe label>.json``):
running the same profile with another ``--finetune``/``--distill`` reuses every search and only fine-tunes again.
A seeded method (the slimnas arms) searches once per seed (``<method>/seed<N>/<budget>/``); the others share one
search across seeds.

Heavy artefacts (ONNX files, checkpoints) go to the work folder; the committed results folder receives only
``results.json``, ``results.md`` and the plot.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import torch

from slimnas.data import DataConfig, load_data
from slimnas.errors import BudgetUnreachable, SlimnasError
from slimnas.export import load_exported, save_exported
from slimnas.fileio import atomic_write_text
from slimnas.latency.fingerprint import machine
from slimnas.machine import fingerprint
from slimnas.models import load_model

from .finetune import deployed_scores, finetune, flops_params, test_evaluator
from .measure import Meter, StateGate, architecture_key, in_state, onnx_for
from .methods import Budget, Context, Timers, get_method, is_arm
from .methods.slimnas_arms import slim_pick
from .profiles import PROFILES, Profile, SlimnasArmConfig
from .report import row_name, write_report

ARCH = "mobilenet_v2"
NUM_CLASSES = 10
INPUT_SHAPE = (3, 32, 32)
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RunOptions:
    profile: Profile
    out: Path  # committed results: results.json, results.md, plot
    work: Path  # caches, checkpoints and ONNX files (not committed)
    methods: tuple[str, ...]
    weights: Path  # the base checkpoint (ignored with train_base)
    train_base: bool = False
    device: Optional[str] = None
    retime: bool = False  # redo the closing timing run even if its models have not changed
    command: str = ""
    seeds: tuple[int, ...] = (0,)  # repetitions: each seed fine-tunes every method again (and re-runs seeded searches)
    # issue 15: also every FP32 model quantized after its fine-tune ("METHOD→int8", the chained recipe) and the base in
    # INT8; METHOD+int8 methods run either way. INT8 graphs: slimnas.quantize's static QDQ settings, calibrated on
    # int8_calibration training images, scored by onnxruntime on the test split, timed as deployed
    int8: bool = False
    int8_calibration: int = 256
    method_budgets: Optional[dict] = None  # method -> the budget fractions it runs at (default: every budget)
    # the closing run waits (up to state_gate.wait_s) for the machine to be in the state the budgets were set in
    state_gate: StateGate = StateGate()


class Run:
    def __init__(self, opts: RunOptions):
        self.opts = opts
        self.p = opts.profile
        self.work = opts.work
        self.device = torch.device(opts.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.t_start = time.time()

    # -- helpers -----------------------------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        line = f"[{time.time() - self.t_start:7.0f} s] {msg}"
        print(line, flush=True)
        with open(self.work / "log.txt", "a") as f:
            f.write(line + "\n")

    @staticmethod
    def cached(path: Path) -> Optional[dict]:
        return json.loads(path.read_text()) if path.is_file() else None

    @staticmethod
    def write(path: Path, data: dict) -> dict:
        atomic_write_text(path, json.dumps(data, indent=1, default=str) + "\n")
        return data

    # -- stages ------------------------------------------------------------------------------------------------
    def check_settings(self) -> None:
        """A work folder holds the searches of one profile and one base model: refuse to mix in other settings.

        The fine-tune recipe is not part of this: each recipe gets its own folders (see the module docstring).
        """
        mine = json.loads(json.dumps({"profile": self.p.search_settings(), "weights": str(self.opts.weights),
                                      "train_base": self.opts.train_base}, default=str))
        path = self.work / "settings.json"
        old = self.cached(path)
        if old is None:
            self.write(path, mine)
            return

        # An arm setting added since the folder was made, at its default, is the folder's setting too.
        defaults = json.loads(json.dumps(asdict(SlimnasArmConfig()), default=str))
        added = {k for k, v in (mine["profile"].get("slimnas") or {}).items()
                 if k not in (old["profile"].get("slimnas") or {}) and defaults.get(k) == v}

        def same(d: dict) -> dict:  # each budget has its own folders: a run may add budgets to a work folder
            profile = {k: v for k, v in d["profile"].items() if k not in ("budgets", "final_timing")}
            if isinstance(profile.get("slimnas"), dict):
                profile["slimnas"] = {k: v for k, v in profile["slimnas"].items() if k not in added}
            return {**d, "profile": profile}

        if same(old) != same(mine):
            changed = sorted(k for k in set(same(old)["profile"]) | set(same(mine)["profile"])
                             if same(old)["profile"].get(k) != same(mine)["profile"].get(k))
            changed += [k for k in ("weights", "train_base") if old[k] != mine[k]]
            raise SlimnasError(f"{self.work} holds a run with other settings ({', '.join(changed)}): "
                               "pass another --work folder or delete that one")

    def check_inputs(self) -> None:
        """The arguments first, then the files they name (a clone without ../shared has no default checkpoint)."""
        if not self.opts.methods:
            raise SlimnasError("no methods given: --methods uniform,torch-pruning,fastnas (for example)")
        for name in self.opts.methods:
            get_method(name)  # an unknown method or a bad variant: one line
        for name in self.opts.methods:
            why = get_method(name).unavailable()
            if why:
                raise SlimnasError(f"method {name!r} cannot run: {why}")
        for name, fractions in (self.opts.method_budgets or {}).items():
            if name not in self.opts.methods:
                raise SlimnasError(f"budgets given for {name!r}, which is not among the methods")
            stray = [f for f in fractions if not any(abs(f - b) < 1e-9 for b in self.p.budgets)]
            if stray:
                raise SlimnasError(f"method {name}@{'/'.join(f'{f:g}' for f in fractions)}: {', '.join(f'{f:g}' for f in stray)} "
                                   f"is not among --budgets ({', '.join(f'{b:g}' for b in self.p.budgets)}); add it there")
        if self.opts.int8_calibration < 1:
            raise SlimnasError(f"--int8-calibration {self.opts.int8_calibration}: give at least 1 training image")
        if not self.opts.train_base and not self.opts.weights.is_file():
            raise SlimnasError(f"base checkpoint {self.opts.weights} not found: pass --weights PATH or --train-base")

    def base_checkpoint(self) -> tuple[Path, dict]:
        if not self.opts.train_base:
            w = self.opts.weights
            recipe = w.with_suffix(".json")
            return w, {"checkpoint": str(w), "trained_here": False,
                       "recipe": json.loads(recipe.read_text()) if recipe.is_file() else None}
        out = self.work / "base" / "cifar10_mobilenet_v2"
        if not out.with_suffix(".pth").is_file():
            cmd = [sys.executable, str(ROOT / "tools" / "train_base.py"), "--out", str(out), "--epochs", str(self.p.base_epochs),
                   "--resume", "--workers", str(self.p.finetune.num_workers), "--no-progress"]
            if self.p.base_steps_per_epoch:
                cmd += ["--steps-per-epoch", str(self.p.base_steps_per_epoch)]
            if self.p.train_subset:
                cmd += ["--train-subset", str(self.p.train_subset)]
            self.log("training the base model: " + " ".join(cmd[1:]))
            subprocess.run(cmd, check=True, cwd=ROOT)
        recipe = json.loads(out.with_suffix(".json").read_text())
        recipe.pop("log", None)
        return out.with_suffix(".pth"), {"checkpoint": str(out.with_suffix(".pth")), "trained_here": True, "recipe": recipe}

    def budgets(self, meter: Meter) -> tuple[dict, list[Budget]]:
        path = self.work / "budgets.json"
        info = self.cached(path)
        if info is None:
            s = self.p.section
            base, _, raw = meter.measure([], s.confirm_timing)
            info = self.write(path, {"base": base.to_dict(), "probe_ms": raw["probe_ms"], "backend": raw["backend"],
                                     "fractions": list(self.p.budgets), "margin": s.margin})
        base_ms = info["base"]["latency_ms"]
        info = {**info, "fractions": list(self.p.budgets)}  # the base's timing is kept; the fractions are this run's
        budgets = [Budget(f, f * (1 - info["margin"]), base_ms) for f in info["fractions"]]
        return info, budgets

    def score(self, model, evaluator, name: str) -> dict:
        macs, params = flops_params(model, INPUT_SHAPE)
        top1 = evaluator.evaluate_model(model.to(self.device), recalibrate=True).top1
        model.cpu()
        self.log(f"{name}: test top-1 {top1:.4f}, {macs / 1e6:.2f} MFLOPs, {params / 1e6:.3f} M params")
        return {"test_top1": top1, "mflops": macs / 1e6, "params_m": params / 1e6}

    def method_budget(self, method, budget: Budget, meter: Meter, evaluator, prepared: dict) -> Optional[dict]:
        """The fine-tuned row of ``method`` at ``budget``, or None where the budget is below what the method's
        smallest model measures (``unreachable.json`` says so, and the report lists it)."""
        seed = method.ctx.seed
        folder = method.folder / budget.label  # the search: per seed for a seeded method, else shared by the seeds
        tuned = folder / self.p.finetune_label() / f"seed{seed}"
        done = self.cached(tuned / "result.json")
        if done is not None:
            return done
        gone = self.cached(folder / "unreachable.json")
        if gone is not None:
            self.unreachable.append(gone)
            return None
        tuned.mkdir(parents=True, exist_ok=True)
        search = self.cached(folder / "search.json")
        if search is None:
            if "prepare_s" not in prepared:
                prepared.update(self.prepare(method))
            self.log(f"{method.name} @ {budget.label}: searching {method.knob_name} (target {budget.target:.3f}x of the base)")
            s = self.p.section
            onnx_dir = self.work / "onnx" / "search" / (f"seed{seed}" if method.seeded else "")

            def timer(e2e):
                def measure(models):  # an INT8 method's candidates run as INT8 graphs beside the FP32 base
                    paths = [onnx_for(m, onnx_dir, INPUT_SHAPE) for m in models]
                    return [m.ratio for m in meter.measure(paths, e2e, dtypes=[method.dtype] * len(paths))[1]]
                return measure

            t0 = time.time()
            try:
                found = method.search(budget, Timers(timer(s.step_timing), timer(s.confirm_timing)))
            except BudgetUnreachable as exc:
                self.log(f"{method.name} @ {budget.label}: unreachable: {exc} (delete {folder / 'unreachable.json'} to try again)")
                gone = self.write(folder / "unreachable.json", {"method": method.name, "budget": budget.label,
                                                                "fraction": budget.fraction, "dtype": method.dtype,
                                                                "reason": str(exc), "search_s": time.time() - t0})
                self.unreachable.append(gone)
                return None
            search_s = time.time() - t0
            save_exported(found.model, folder / "searched.pt", arch=ARCH, num_classes=NUM_CLASSES)
            search = self.write(folder / "search.json", {"knob": found.knob, "ratio_in_search": found.ratio,
                                                          "search_s": search_s, "probes": found.probes, "info": found.info})
            self.log(f"{method.name} @ {budget.label}: knob {found.knob}, measured {found.ratio:.3f}x in {search_s:.0f} s")
        model = load_exported(folder / "searched.pt")
        t0 = time.time()
        model = finetune(model, self.data, replace(self.p.finetune, seed=seed), tuned / "finetune", self.device,
                         teacher=self.base_model if self.p.distill else None)
        finetune_s = time.time() - t0
        save_exported(model, tuned / "final.pt", arch=ARCH, num_classes=NUM_CLASSES)
        scores = self.score(model, evaluator, f"{method.name} @ {budget.label}, seed {seed}")
        if method.dtype == "int8":  # the deployed INT8 graph's accuracy, never the FP32 torch model's
            deployed = self.deployed(model, tuned, evaluator, f"{method.name} @ {budget.label}, seed {seed}")
            scores = {**scores, "torch_test_top1": scores["test_top1"], "test_top1": deployed["int8_test_top1"], **deployed}
        prep = self.cached(method.folder / "prepare.json") or {}
        return self.write(tuned / "result.json", {
            "method": method.name, "budget": budget.label, "fraction": budget.fraction, "seed": seed,
            "seeded_search": method.seeded, "knob_name": method.knob_name, "dtype": method.dtype,
            "knob": search["knob"], "ratio_in_search": search["ratio_in_search"], "prepare_s": prep.get("prepare_s", 0.0),
            "search_s": search["search_s"], "finetune_s": finetune_s, "finetune_recipe": self.p.finetune_label(), **scores,
            "final": str(tuned / "final.pt")})

    def deployed(self, model, folder: Path, evaluator, name: str) -> dict:
        """:func:`.finetune.deployed_scores` of ``model``, cached in ``folder`` (``deployed.json``)."""
        done = self.cached(folder / "deployed.json")
        if (done is not None and Path(done["int8_onnx"]).is_file()
                and done["int8_calibration_images"] == self.opts.int8_calibration):  # another --int8-calibration: again
            return done
        d = deployed_scores(model, folder, evaluator, self.data, self.opts.int8_calibration, self.device)
        self.log(f"{name}: onnxruntime test top-1 FP32 {d['onnx_fp32_test_top1']:.4f}, INT8 {d['int8_test_top1']:.4f} "
                 f"({d['onnx_test_images']} images)")
        return self.write(folder / "deployed.json", d)

    def chained_rows(self, rows: list[dict], evaluator) -> list[dict]:
        """With ``--int8``: the base and each FP32 row quantized after its fine-tune (``METHOD→int8``), the recipe a
        user chains by hand (search under FP32 latency, then post-training quantization)."""
        out = []
        base_dir = self.work / "base_int8"
        base_dir.mkdir(parents=True, exist_ok=True)
        d = self.deployed(self.base_model, base_dir, evaluator, "base")
        self.base_scores = {**self.base_scores, "onnx_fp32_test_top1": d["onnx_fp32_test_top1"]}
        out.append({"method": "base→int8", "budget": "1x", "fraction": 1.0, "seed": 0, "seeded_search": False,
                    "knob_name": "none (the base, quantized)", "knob": None, "ratio_in_search": None, "prepare_s": 0.0,
                    "search_s": 0.0, "finetune_s": 0.0, "dtype": "int8", **self.base_scores,
                    "torch_test_top1": self.base_scores["test_top1"], "test_top1": d["int8_test_top1"], **d,
                    "final": str(self.work / "base_int8" / "base.pt")})
        if not Path(out[0]["final"]).is_file():
            save_exported(self.base_model, out[0]["final"], arch=ARCH, num_classes=NUM_CLASSES)
        for r in rows:
            if r.get("dtype", "fp32") != "fp32":
                continue
            d = self.deployed(load_exported(r["final"]), Path(r["final"]).parent, evaluator, row_name(r))
            r.update(onnx_fp32_test_top1=d["onnx_fp32_test_top1"])
            out.append({**r, "method": r["method"] + "→int8", "knob_name": get_method(r["method"]).knob_name + ", then INT8",
                        "dtype": "int8", "torch_test_top1": r["test_top1"], "test_top1": d["int8_test_top1"], **d})
        return out

    def prepare(self, method) -> dict:
        path = method.folder / "prepare.json"
        t0 = time.time()
        self.log(f"{method.name}: preparing" + (f" (seed {method.ctx.seed})" if method.seeded else ""))
        info = method.prepare()
        old = self.cached(path)
        if old is not None:  # the expensive part was cached on disk by the method; keep the first wall time
            return old
        return self.write(path, {"prepare_s": time.time() - t0, "info": info})

    def final_timing(self, rows: list[dict]) -> dict:
        label = self.p.finetune_label()
        path = self.work / f"final_timing-{label}.json"
        names = [row_name(r) for r in rows]
        models = [load_exported(r["final"]) for r in rows]
        # a row searched again under the same name (its folder removed) is another architecture: the cached run and
        # the ONNX files are keyed by name and architecture, never by name alone
        archs = [architecture_key(m) + ("-int8" if r.get("dtype") == "int8" else "") for m, r in zip(models, rows)]
        timing = asdict(self.p.final_timing)
        old = self.cached(path)
        # a closing run cached before its settings were recorded was made with the profile's own
        old_timing = old.get("timing", asdict(PROFILES[self.p.name].final_timing)) if old is not None else None
        if old is not None and old["names"] == names and old.get("architectures") == archs and old_timing == timing \
                and not self.opts.retime:
            return old
        onnx_dir = self.work / "onnx" / f"final-{label}"
        # an INT8 row is timed as the very graph that was scored (model.int8.onnx), run as it is
        paths = [Path(r["int8_onnx"]) if r.get("dtype") == "int8" else
                 onnx_for(m, onnx_dir, INPUT_SHAPE, name=n.replace("@", "_").replace("#", "_seed") + "-" + a)
                 for m, n, a, r in zip(models, names, archs, rows)]
        meter = Meter(onnx_for(self.base_model, self.work / "onnx", INPUT_SHAPE, name="base"))
        base, ms, raw, state = self.gated_closing_run(meter, paths)
        return self.write(path, {"names": names, "architectures": archs, "timing": timing, "base": base.to_dict(), "models": [m.to_dict() for m in ms],
                                 "probe_ms": raw["probe_ms"], "backend": raw["backend"], "state": state})

    def gated_closing_run(self, meter: Meter, paths: list[Path]):
        """The closing run, in the machine state the budgets were set in where the gate can wait for it
        (:class:`~headline_lib.measure.StateGate`): (base, models, raw worker output, the state it ran in)."""
        def closing():
            self.log(f"closing timing run: {len(paths)} models + the base, {self.p.final_timing.rounds} interleaved "
                     f"rounds in each of {self.p.final_timing.processes} fresh process(es)")
            out = meter.measure(paths, self.p.final_timing)
            return out[0].latency_ms, out

        probe = replace(self.p.final_timing, processes=min(3, self.p.final_timing.processes))  # the closing run, short
        (base, ms, raw), state = in_state(closing, lambda: meter.measure(paths, probe)[0].latency_ms,
                                          self.budget_info["base"]["latency_ms"], self.opts.state_gate, self.log)
        return base, ms, raw, state

    def cuda_timing(self, rows: list[dict]) -> Optional[dict]:
        """On a GPU machine, also the torch CUDA backend (in process, CUDA events); budgets stay on the CPU target."""
        if not torch.cuda.is_available():
            return None
        from slimnas.latency.backends import BackendConfig, Workload, create_backend
        from slimnas.latency.timing import TimingConfig

        backend = create_backend("torch", BackendConfig("cuda", 1, 1))
        timing = TimingConfig(samples=100)
        out = {"backend": backend.describe()}
        models = [("base", self.base_model)] + [(row_name(r), load_exported(r["final"])) for r in rows]
        for name, m in models:
            t = backend.time(Workload((1,) + INPUT_SHAPE, (1, NUM_CLASSES), torch=lambda m=m: copy.deepcopy(m)), timing)
            out[name] = {"median_ms": t.median_ms, "p10_ms": t.p10_ms, "p90_ms": t.p90_ms}
        return out

    def record_invocation(self) -> float:
        """Append this invocation's wall time to ``invocations.json``; return the total over all of them."""
        path = self.work / "invocations.json"
        runs = (self.cached(path) or {"runs": []})["runs"]
        runs.append({"command": self.opts.command, "wall_s": time.time() - self.t_start})
        self.write(path, {"runs": runs})
        return sum(r["wall_s"] for r in runs)

    # -- the whole run -----------------------------------------------------------------------------------------
    def run(self) -> dict:
        from slimnas.log import forward_to

        with forward_to(self.log):  # slimnas's own messages (profiling, slim's stages) into this run's log
            return self._run()

    def _run(self) -> dict:
        self.check_inputs()  # bad input leaves no work folder behind
        self.work.mkdir(parents=True, exist_ok=True)
        self.check_settings()
        p = self.p
        weights, base_info = self.base_checkpoint()
        self.base_model = load_model(ARCH, num_classes=NUM_CLASSES, weights=str(weights)).eval()
        data_config = DataConfig("cifar10", image_size=INPUT_SHAPE[1], train_subset=p.train_subset,
                                 val_subset=p.val_subset, test_subset=p.test_subset, seed=0)
        self.data = load_data(data_config)
        self.log(f"profile {p.name}: {len(self.data.train)} train / {len(self.data.val)} val / {len(self.data.test)} test "
                 f"images; device {self.device}; methods {', '.join(self.opts.methods)}; "
                 f"seeds {', '.join(map(str, self.opts.seeds))}")
        meter = Meter(onnx_for(self.base_model, self.work / "onnx", INPUT_SHAPE, name="base"))
        budget_info, budgets = self.budgets(meter)
        self.budget_info = budget_info
        self.log(f"base {budget_info['base']['latency_ms']:.4f} ms; budgets " +
                 ", ".join(f"{b.label} = {b.fraction * b.base_ms:.4f} ms (search target {b.target:.3f}x)" for b in budgets))
        evaluator = test_evaluator(self.data, p.calib_images, self.device)
        base_scores = self.cached(self.work / "base_scores.json") or self.write(
            self.work / "base_scores.json", self.score(self.base_model, evaluator, "base"))
        self.base_scores = base_scores
        rows = []
        self.unreachable: list[dict] = []
        for seed in self.opts.seeds:
            ctx = Context(self.base_model, weights, ARCH, INPUT_SHAPE, self.data, data_config, p, self.device, self.log,
                          seed=seed, work=self.work)
            for name in self.opts.methods:
                cls = get_method(name)
                method = cls(ctx, self.work / name / (f"seed{seed}" if cls.seeded else ""))
                prepared: dict = {}
                only = (self.opts.method_budgets or {}).get(name)
                for b in budgets:
                    if only is None or any(abs(b.fraction - f) < 1e-9 for f in only):
                        row = self.method_budget(method, b, meter, evaluator, prepared)
                        if row is not None:
                            rows.append(row)
        for r in rows:  # an arm's pick, as its slim run gave it: a share under the budget may be by evidence
            if is_arm(r["method"]):  # final.pt lies in BUDGET/FINETUNE_LABEL/seedN/, search.json in BUDGET/
                r.update(slim_pick(Path(r["final"]).parents[2]))
        if self.opts.int8:
            rows += self.chained_rows(rows, evaluator)
        timing = self.final_timing(rows)
        cuda = self.cuda_timing(rows)
        results = {
            "profile": p.name, "settings": asdict(p), "finetune_label": p.finetune_label(), "command": self.opts.command,
            "methods": list(self.opts.methods), "method_budgets": self.opts.method_budgets, "int8": self.opts.int8,
            "int8_calibration": self.opts.int8_calibration, "seeds": len(self.opts.seeds), "seed_list": list(self.opts.seeds),
            "fingerprint": {**fingerprint(torch.get_num_threads()), **machine()}, "base": {**base_info, **self.base_scores},
            "budgets": budget_info, "final_timing": timing, "cuda_timing": cuda, "rows": rows,
            "unreachable": list({(u["method"], u["budget"]): u for u in self.unreachable}.values()),
            "wall_s_this_invocation": time.time() - self.t_start, "wall_s_all_invocations": self.record_invocation(),
        }
        write_report(results, self.opts.out)
        self.log(f"wrote {self.opts.out}/results.json, results.md, accuracy_vs_latency.png")
        return results
