"""The method contract and its registry: one file plus one ``@method`` decorator per way of slimming a model.

A method turns the base model into a plain model of the same class that meets a latency budget BY
MEASUREMENT. Most methods expose one knob (a width ratio, a pruning ratio, a FLOPs limit) and inherit
:meth:`Method.search`, which searches the knob with :func:`~..bisect.bisect_by_measurement`; a method with
its own latency-aware search (the slimnas arms) overrides :meth:`Method.search`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Optional, Sequence

import torch
from torch import nn

from slimnas.data import DataConfig, Datasets
from slimnas.errors import SlimnasError
from slimnas.models import apply_architecture, architecture

from ..bisect import bisect_by_measurement
from ..measure import architecture_key
from ..profiles import Profile

METHODS: dict[str, type["Method"]] = {}


def method(cls: type["Method"]) -> type["Method"]:
    """Class decorator: register a :class:`Method` under its ``name``."""
    METHODS[cls.name] = cls
    return cls


@dataclass
class Context:
    """What every method may use: the base model and its checkpoint, the data, the profile, the device."""

    base: nn.Module  # the plain base model (eval mode); methods copy it, never change it
    weights: Path  # the base checkpoint (a state_dict file)
    arch: str  # torchvision name of the base model
    input_shape: tuple[int, ...]  # (C, H, W)
    data: Datasets
    data_config: DataConfig  # how ``data`` was loaded (the slimnas arms train their supernets on the same splits)
    profile: Profile
    device: torch.device
    log: Callable[[str], None] = print
    extra: dict = field(default_factory=dict)
    seed: int = 0  # this repetition's seed: fine-tune data order, and a seeded method's supernet and search
    work: Optional[Path] = None  # the run's work folder (what every seed shares: a latency table, say)


@dataclass(frozen=True)
class Budget:
    fraction: float  # of the base model's measured latency
    target: float  # what the search aims at: fraction * (1 - margin)
    base_ms: float  # the base model's median in the run that set the budgets

    @property
    def label(self) -> str:
        return f"{self.fraction:g}x"


@dataclass
class Searched:
    """A method's answer for one budget: the plain model (not yet fine-tuned) and how it was found."""

    model: nn.Module
    knob: Optional[float]
    ratio: float  # measured latency / base during the search
    probes: list[dict]
    info: dict = field(default_factory=dict)


Measure = Callable[[Sequence[nn.Module]], Sequence[float]]


@dataclass(frozen=True)
class Timers:
    """Latency ratios to the base of a list of models, each list timed in one fresh process."""

    step: Measure  # a search step's measurement
    confirm: Measure  # the longer confirmation of the chosen candidates


class Method:
    name: ClassVar[str] = ""
    knob_name: ClassVar[str] = ""
    lo: ClassVar[float] = 0.1  # knob range searched
    hi: ClassVar[float] = 1.0
    # Does the seed change what the search finds? False: the search is deterministic given the base and the
    # measurements, so every seed shares it and only the fine-tune differs; True: one search per seed.
    seeded: ClassVar[bool] = False
    # The deployed dtype: "int8" searches under the latency of each candidate's INT8 (QDQ) graph, budgets still
    # fractions of the FP32 base, and reports the INT8 graph's onnxruntime accuracy (``METHOD+int8``, :func:`int8_variant`)
    dtype: ClassVar[str] = "fp32"
    shared_name: ClassVar[str] = ""  # an INT8 twin's FP32 method: its one-time work (a sensitivity map) is shared

    def __init__(self, ctx: Context, folder: Path):
        self.ctx = ctx
        self.folder = Path(folder)

    @property
    def shared_folder(self) -> Path:
        """Where one-time work that does not depend on the dtype lives: the FP32 method's folder for an INT8 twin."""
        if not self.shared_name:
            return self.folder
        root = self.folder.parent.parent if self.seeded else self.folder.parent
        return root / self.shared_name / (self.folder.name if self.seeded else "")

    @classmethod
    def unavailable(cls) -> Optional[str]:
        """Why this method cannot run here (a missing package, say), or None."""
        return None

    def prepare(self) -> dict:
        """One-time work shared by every budget (cached in ``self.folder`` where it is expensive)."""
        return {}

    def build(self, knob: float) -> nn.Module:
        raise NotImplementedError

    def search(self, budget: Budget, timers: Timers) -> Searched:
        s = self.ctx.profile.section
        found = bisect_by_measurement(self.build, architecture_key, timers.step, self.lo, self.hi, budget.target,
                                      points=s.points, steps=s.steps, confirm=timers.confirm, log=self.ctx.log)
        return Searched(found.candidate, found.knob, found.ratio, [p.to_dict() for p in found.probes])

    def fresh_base(self) -> nn.Module:
        return copy.deepcopy(self.ctx.base).eval()


INT8 = "+int8"


def int8_variant(cls: type[Method], name: str) -> type[Method]:
    """``fastnas+int8``: ``cls`` searched under the measured latency of its candidates' INT8 graphs (budgets stay
    fractions of the FP32 base timed beside them) and reported as that INT8 graph; it shares ``cls``'s one-time work."""
    if cls.dtype != "fp32":
        raise SlimnasError(f"method {name!r}: {INT8} once, at the end of the name")
    shared = name[: -len(INT8)]
    extra = {"name": name, "dtype": "int8", "shared_name": shared}
    if getattr(cls, "base_name", None) == "":  # a slimnas arm itself: its supernet is the FP32 arm's
        extra["base_name"] = shared
    return type(cls.__name__ + "Int8", (cls,), extra)


def plain_copy(template: nn.Module, model: nn.Module) -> nn.Module:
    """``model``'s layer shapes and weights in a fresh copy of ``template``'s class, free of any library's
    wrappers, hooks or attributes (what every method hands on to fine-tuning and export)."""
    out = apply_architecture(copy.deepcopy(template), architecture(model))  # widths, dropped blocks, kernels
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    missing = set(out.state_dict()) - set(state)
    if missing:
        raise SlimnasError(f"the slimmed model lacks {len(missing)} tensors of the original class (e.g. {sorted(missing)[0]})")
    out.load_state_dict({k: state[k] for k in out.state_dict()})
    return out.eval()


def require(module: str, extra: str = "bench") -> Optional[str]:
    """None if ``module`` imports, else a one-line reason naming the pip extra."""
    try:
        __import__(module)
    except Exception as exc:  # noqa: BLE001 - an optional package can fail to import in many ways
        return f"{module} is not importable ({type(exc).__name__}): pip install -e '.[{extra}]'"
    return None
