"""The slimnas arms: a supernet trained with ``sandwich``, ``cafenet`` or ``bsnas`` on latency-sensitive bins,
then slimnas's own pipeline (:func:`slimnas.pipeline.slim`: evolutionary search under the latency budget, the
best candidates verified by end-to-end measurement) picks the subnet.

:meth:`SlimnasArm.prepare` trains the supernet once per strategy (resumable, in the method's folder); each
budget is then one ``slim`` run reusing it. ``slim`` ends with a fine-tune of its own; here it is one step
and only the chosen subnet is kept: the subnet is exported from the supernet and gets the benchmark's common
fine-tune like every other method. The latency table comes from ``latency_tables/`` when one fits this
machine and the arm's search space, else it is profiled once into the method's folder.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from slimnas.errors import SlimnasError
from slimnas.export import export_subnet
from slimnas.space import SpaceConfig
from slimnas.subnet import Subnet
from slimnas.supernet import ConvertConfig, convert
from slimnas.train import TrainConfig
from slimnas.train.run import RunSpec, load_run, train

from ..profiles import SUPERNET_FIELDS, SlimnasArmConfig, parse_arm
from .base import METHODS, Budget, Method, Searched, Timers, method, plain_copy, require

SUPERNET = "supernet"
DONE = "space_final.json"  # written by slimnas.train.run.train at the end of a run


class SlimnasArm(Method):
    strategy = ""
    options: dict = {}
    max_ratio = 1.0  # > 1 broadens the space (BS-NAS)
    knob_name = "slimnas search + verification"
    seeded = True  # the supernet's sampling and data order and the evolutionary search follow the seed
    base_name = ""  # the registered arm a variant derives from ("" for the arm itself)
    overrides: dict = {}  # a variant's changes to the profile's SlimnasArmConfig (see :func:`arm_variant`)

    @property
    def arm(self) -> SlimnasArmConfig:
        """The profile's arm settings with this variant's overrides."""
        return replace(self.ctx.profile.slimnas, **self.overrides)

    @property
    def supernet_dir(self) -> Path:
        """``supernet``, or ``supernet[k=v:...]`` for a variant that changes how the supernet trains: variants that
        change only the search or the pick reuse their arm's supernet (same seed)."""
        own = {k: v for k, v in self.overrides.items() if k in SUPERNET_FIELDS}
        root = self.folder.parent.parent / self.base_name / self.folder.name if self.base_name else self.folder  # .../seedN
        tag = ":".join(f"{k}={v}" for k, v in sorted(own.items()))
        return root / (f"{SUPERNET}[{tag}]" if tag else SUPERNET)

    @classmethod
    def unavailable(cls):
        return require("slimnas.pipeline", extra="dev")

    # -- the supernet, once per strategy ---------------------------------------------------------------------
    def space(self) -> SpaceConfig:
        return SpaceConfig(max_ratio=self.max_ratio, depth=bool(self.arm.depth), kernel_sizes=self.arm.kernels())

    def train_config(self) -> TrainConfig:
        a, ft = self.arm, self.ctx.profile.finetune
        return replace(ft, epochs=a.supernet_epochs, steps_per_epoch=a.supernet_steps_per_epoch, lr=a.supernet_lr,
                       warmup_fraction=0.1, seed=self.ctx.seed)

    def strategy_options(self) -> dict:
        return {**self.options, "teacher": self.arm.supernet_teacher}

    def latency_table(self, dtype: str = "fp32") -> Path:
        """A table for this machine, the arm's space and ``dtype``: shipped if one fits, else profiled here (resumable)."""
        from slimnas.latency import ProfileConfig, profile
        from slimnas.pipeline.config import LatencyConfig
        from slimnas.pipeline.device import find_table, make_backend

        net = convert(self.fresh_base(), self.ctx.input_shape, ConvertConfig(space=self.space()))
        backend = make_backend(LatencyConfig(dtype=dtype))
        table = find_table(net, backend)
        if table is not None:
            return table.resolve()
        kernels = "".join(f"_k{k}" for k in self.arm.kernels())  # latency_table_depth_k3_k5_k7
        name = "latency_table" + ("_depth" if self.arm.depth else "") + kernels + ("" if dtype == "fp32" else f"_{dtype}")
        table = (self.ctx.work / (self.base_name or self.name) if self.ctx.work else self.folder) / name  # shared by the seeds
        s = self.space()
        from slimnas.latency.table import CALIBRATION

        done = (table / CALIBRATION).is_file()  # written last: profile() then reuses the table's entries
        self.ctx.log(f"{self.name}: no shipped {dtype} latency table fits this machine and space; "
                     + (f"using the one profiled into {table}" if done else f"profiling one into {table}"))
        profile(net, backend, table, model=self.ctx.arch, config=ProfileConfig(),
                model_args={"model": self.ctx.arch, "num_classes": self.ctx.data.num_classes, "ratios": list(s.ratios),
                            "divisor": s.divisor, "max_ratio": s.max_ratio, **({"depth": True} if s.depth else {}),
                            **({"kernel_sizes": list(s.kernel_sizes)} if s.kernel_sizes else {})})
        return table.resolve()

    def prepare(self) -> dict:
        # the supernet (and its latency-sensitive bins) is the FP32 arm's, whatever the dtype searched: an INT8 search
        # scores its candidates by the FP32 supernet (benchmarks/results/int8_rank) and times them as INT8 graphs
        fp32_table = self.latency_table()
        self.table = fp32_table if self.dtype == "fp32" else self.latency_table(self.dtype)
        a = self.arm
        spec = RunSpec(model=self.ctx.arch, weights=str(self.ctx.weights), num_classes=self.ctx.data.num_classes,
                       input_size=self.ctx.input_shape[1], space=self.space(), data=self.ctx.data_config,
                       strategy=self.strategy, strategy_options=self.strategy_options(),
                       bins=f"latency:{a.latency_bins}:{fp32_table}", train=self.train_config(), device=str(self.ctx.device))
        run_dir = self.supernet_dir
        if not (run_dir / DONE).is_file():
            self.ctx.log(f"{self.name}: training the supernet ({self.strategy}, latency bins from {self.table.name})")
            train(spec, run_dir, resume=True)
        return {"strategy": self.strategy, "options": spec.strategy_options, "max_ratio": self.max_ratio,
                "bins": spec.bins, "train": spec.train.to_dict(), "search_table": str(self.table), "dtype": self.dtype}

    # -- one budget: the pipeline's search and verification --------------------------------------------------
    def slim_config(self, budget: Budget):
        from slimnas.pipeline.config import FinetuneConfig, FitnessConfig, LatencyConfig, SlimConfig, SupernetConfig, VerifyConfig
        from slimnas.search import SearchConfig

        p, a = self.ctx.profile, self.arm
        one_step = replace(p.finetune, epochs=1, steps_per_epoch=1)  # slim's own fine-tune: skipped in effect
        return SlimConfig(
            supernet=SupernetConfig(run=str(self.supernet_dir)),
            # an INT8 target's relative budget is a fraction of the FP32 original timed beside the candidates
            latency=LatencyConfig(table=str(self.table), rounds=a.verify_rounds, samples=a.verify_samples, dtype=self.dtype),
            constraints=(f"latency<={budget.target:.4f}x",),
            fitness=FitnessConfig(val_images=p.val_subset, calib_images=a.calib_images),
            search=SearchConfig(population=a.population, generations=a.generations, time_limit_s=60 * a.search_minutes,
                                sensitivity_levels=a.search_sensitivity_levels),
            verify=VerifyConfig(fill=a.verify_fill, rounds=a.verify_rounds_max, margin_se=a.verify_margin_se,
                                fill_search=a.verify_fill_search, state_ms=budget.base_ms if a.verify_state else None,
                                state_tol=a.verify_state_tol, state_wait_s=a.verify_state_wait_s), finetune=FinetuneConfig(train=one_step, distill=False),
            device=str(self.ctx.device), seed=self.ctx.seed)

    def search(self, budget: Budget, timers: Timers) -> Searched:
        from slimnas.pipeline import slim

        out = self.folder / budget.label / "slim"
        summary = slim(self.slim_config(budget), out, command=f"benchmarks/headline.py ({self.name} @ {budget.label})",
                       progress=False)
        subnet = Subnet.from_json((out / "subnet.json").read_text())
        _, net, _, _ = load_run(self.supernet_dir, "cpu")
        model = plain_copy(self.ctx.base, export_subnet(net, subnet))
        (ratio,) = timers.confirm([model])
        info = {"slim_run": str(out), "subnet": subnet.hash,
                "chosen": {k: v for k, v in (summary.get("chosen") or {}).items() if isinstance(v, (int, float, str))}}
        return Searched(model, None, float(ratio), [{"confirm": True, "ratio": float(ratio), "key": subnet.hash}], info)


@method
class SlimnasSandwich(SlimnasArm):
    name = "slimnas-sandwich"
    strategy = "sandwich"
    options = {"n_random": 2}


@method
class SlimnasCafenet(SlimnasArm):
    name = "slimnas-cafenet"
    strategy = "cafenet"
    options = {"n_random": 2, "k": 2, "free_ratio": 0.1}


@method
class SlimnasBsnas(SlimnasArm):
    name = "slimnas-bsnas"
    strategy = "bsnas"
    options = {"n_random": 2, "floor": 2, "min_samples": 2}
    max_ratio = 1.5

    def strategy_options(self) -> dict:
        a = self.arm
        per_epoch = len(self.ctx.data.train) // self.ctx.profile.finetune.batch_size
        total = a.supernet_epochs * min(per_epoch, a.supernet_steps_per_epoch or per_epoch)
        return {**super().strategy_options(), "shrink_every": max(1, total // 6)}


def arm_variant(name: str) -> type[SlimnasArm]:
    """``"slimnas-bsnas:supernet_teacher=none:verify_margin_se=0"``: the arm with those fields of the profile's
    :class:`SlimnasArmConfig` changed, a method of its own (own folder, row and plot line) for ablations run side by
    side with the arm itself. Fields of ``SUPERNET_FIELDS`` give it its own supernet; the others reuse the arm's."""
    base, _, spec = name.partition(":")
    cls = METHODS.get(base)
    if cls is None or not issubclass(cls, SlimnasArm):
        arms = ", ".join(n for n, c in METHODS.items() if issubclass(c, SlimnasArm))
        raise SlimnasError(f"method {name!r}: a variant is ARM:KEY=VALUE[:KEY=VALUE] with ARM one of {arms}")
    overrides = parse_arm(spec)
    if not overrides:
        raise SlimnasError(f"method {name!r}: name at least one KEY=VALUE after the arm, e.g. {base}:supernet_teacher=none")
    return type(cls.__name__ + "Variant", (cls,), {"name": name, "base_name": base, "overrides": overrides})


def slim_pick(budget_folder: Path) -> dict:
    """The slim run's own account of its pick, kept in the budget folder's search.json (``{}`` where there is none):
    ``pick_reason`` and ``narrower_by_evidence`` (the share left unused is by evidence: a narrower candidate won on its
    score, or every wider one scored was beaten by a cheaper one)."""
    import json

    from slimnas.search.pick import narrower_by_evidence

    search = Path(budget_folder) / "search.json"
    chosen = json.loads(search.read_text()).get("info", {}).get("chosen", {}) if search.is_file() else {}
    reason = chosen.get("pick_reason")
    if not reason:
        return {}
    return {"pick_reason": reason, "narrower_by_evidence": narrower_by_evidence(reason)}
