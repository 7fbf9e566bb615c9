"""The search space: candidate widths per channel group, depths per stage of skippable blocks, and the subnet
operators search uses."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence, Union

from .errors import SlimnasError
from .subnet import Subnet

Rng = Union[int, random.Random, None]

DEFAULT_RATIOS = (0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)
DEPTH_KNOB = "depth "  # a stage's depth among the knobs of a space (group names never hold a space)
KERNEL_KNOB = "kernel "  # an elastic conv's kernel size among the knobs


@dataclass(frozen=True)
class SpaceConfig:
    """How candidate widths are laid out for every searchable group."""

    ratios: tuple[float, ...] = DEFAULT_RATIOS  # width ratios relative to the checkpoint's width
    divisor: int = 8  # candidate widths are rounded to multiples of this (kernels are faster on them)
    max_ratio: float = 1.0  # > 1 broadens the space (BS-NAS spring blocks): wider than the checkpoint
    broaden_step: float = 0.125  # ratio step of the candidates added above 1.0 when broadening
    # Grouped convs (ResNeXt, RegNet): "whole" keeps whole conv groups (the group count follows the width);
    # "narrow" keeps every conv group and narrows each (the group count stays; Torch-Pruning's way).
    conv_groups: str = "whole"
    # Elastic depth: each stage of skippable residual blocks (see slimnas.trace.blocks) keeps its first k blocks,
    # k from 0 to all of them. Off by default: a width-only space, and subnets without depth.
    depth: bool = False
    # Elastic kernels: each depthwise conv with "same" padding chooses its kernel size from these (and its own); a
    # larger kernel than the checkpoint's starts as it with a zero border, a smaller one is its centre. () : off.
    kernel_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not 1.0 <= self.max_ratio <= 4.0:
            raise SlimnasError(f"max_ratio must be between 1.0 and 4.0, got {self.max_ratio}")
        if not self.ratios:
            raise SlimnasError("ratios must list at least one width ratio, e.g. 0.5,0.75,1.0")
        bad = [r for r in self.ratios if not 0.0 < r <= self.max_ratio]
        if bad:
            raise SlimnasError(
                f"width ratios out of range: {', '.join(f'{r:g}' for r in bad)}; each must be in "
                f"(0, {self.max_ratio:g}] (raise max_ratio to broaden beyond the checkpoint)"
            )
        if self.divisor < 1:
            raise SlimnasError(f"divisor must be a positive integer, got {self.divisor}")
        if self.conv_groups not in ("whole", "narrow"):
            raise SlimnasError(f"conv_groups must be 'whole' (keep whole conv groups) or 'narrow' (narrow every conv "
                               f"group), got {self.conv_groups!r}")
        if not 0.0 < self.broaden_step <= 4.0:  # all_ratios() steps up by it: zero or less would never end
            raise SlimnasError(f"broaden_step must be in (0, 4], got {self.broaden_step}")
        bad = [k for k in self.kernel_sizes if not isinstance(k, int) or isinstance(k, bool) or k < 1 or k % 2 == 0]
        if bad:
            raise SlimnasError(f"kernel_sizes must be odd positive integers such as 3,5,7, got {', '.join(map(str, bad))}")

    def all_ratios(self) -> list[float]:
        extra = []
        r = 1.0 + self.broaden_step
        while self.max_ratio > 1.0 and r <= self.max_ratio + 1e-9:
            extra.append(r)
            r += self.broaden_step
        if self.max_ratio > 1.0 and (not extra or extra[-1] < self.max_ratio - 1e-9):
            extra.append(self.max_ratio)
        return sorted(set(self.ratios) | set(extra))


def make_divisible(value: float, divisor: int, minimum: Optional[int] = None) -> int:
    """Round to the nearest multiple of ``divisor`` without dropping more than 10% (MobileNet's rule)."""
    minimum = divisor if minimum is None else minimum
    new = max(minimum, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def candidate_widths(width: int, config: SpaceConfig) -> tuple[int, ...]:
    """Candidate widths of a group whose checkpoint width is ``width``; always includes ``width`` itself."""
    out = {width}
    for r in config.all_ratios():
        if r == 1.0:
            continue
        if r < 1.0:
            w = min(make_divisible(width * r, config.divisor, minimum=min(config.divisor, width)), width)
        else:  # broadened: round down so the widest never exceeds max_ratio
            w = max(width, int(width * r) // config.divisor * config.divisor)
        out.add(max(1, w))
    return tuple(sorted(out))


@dataclass(frozen=True)
class GroupChoices:
    """One searchable group: its checkpoint width and its candidate widths (ascending)."""

    name: str
    width: int
    choices: tuple[int, ...]

    @property
    def max_width(self) -> int:
        return self.choices[-1]


@dataclass(frozen=True)
class StageChoices:
    """One stage of skippable blocks (execution order) and how many of them a subnet may keep (ascending)."""

    name: str
    blocks: tuple[str, ...]
    choices: tuple[int, ...]

    def dropped(self, depth: int) -> tuple[str, ...]:
        """The blocks a subnet keeping ``depth`` of them drops: the last ones."""
        return self.blocks[depth:]


@dataclass(frozen=True)
class KernelChoices:
    """One conv with an elastic kernel: its checkpoint kernel size and the sizes it may take (ascending)."""

    name: str
    kernel: int
    choices: tuple[int, ...]


def _rng(rng: Rng) -> random.Random:
    return rng if isinstance(rng, random.Random) else random.Random(rng)


class SearchSpace:
    """Candidate widths for each searchable group, depths for each stage, and the operators on subnets built from them."""

    def __init__(self, groups: Sequence[GroupChoices], stages: Sequence[StageChoices] = (),
                 kernels: Sequence[KernelChoices] = (), inner: Optional[Mapping[str, Iterable[str]]] = None):
        self.groups: tuple[GroupChoices, ...] = tuple(groups)
        self.stages: tuple[StageChoices, ...] = tuple(stages)
        self.kernels: tuple[KernelChoices, ...] = tuple(kernels)
        # Knobs (group names, "kernel <conv>") that live only inside one skippable block, by block: a subnet that
        # drops the block does not use them, so they are set to their narrowest choice (:meth:`canonical`).
        self.inner: dict[str, tuple[str, ...]] = {b: tuple(k) for b, k in (inner or {}).items()}
        self._by_name = {g.name: g for g in self.groups}
        self._stage = {s.name: s for s in self.stages}
        self._kernel = {k.name: k for k in self.kernels}

    def __len__(self) -> int:
        return len(self.groups)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> GroupChoices:
        return self._by_name[name]

    def names(self) -> list[str]:
        return [g.name for g in self.groups]

    def size(self) -> int:
        """Number of distinct subnets (widths times depths; widths inside dropped blocks still count)."""
        n = 1
        for g in self.groups:
            n *= len(g.choices)
        for st in self.stages:
            n *= len(st.choices)
        for k in self.kernels:
            n *= len(k.choices)
        return n

    def kernel(self, name: str) -> KernelChoices:
        return self._kernel[name]

    def stage(self, name: str) -> StageChoices:
        return self._stage[name]

    # -- knobs: every choice a subnet makes, widths and depths alike (for search operators that step along them) --
    def knobs(self) -> list[tuple[str, tuple[int, ...]]]:
        """``(knob, choices ascending)``: each group by its name, then each stage as ``"depth <stage>"``, then each
        elastic conv as ``"kernel <conv>"``."""
        return ([(g.name, g.choices) for g in self.groups] + [(DEPTH_KNOB + st.name, st.choices) for st in self.stages]
                + [(KERNEL_KNOB + k.name, k.choices) for k in self.kernels])

    def value(self, subnet: Subnet, knob: str) -> int:
        """The width (the depth, the kernel size, for a stage's or a conv's knob) ``subnet`` gives ``knob``."""
        if knob.startswith(DEPTH_KNOB):
            st = self._stage[knob[len(DEPTH_KNOB):]]
            return subnet.depth.get(st.name, st.choices[-1])
        if knob.startswith(KERNEL_KNOB):
            k = self._kernel[knob[len(KERNEL_KNOB):]]
            return subnet.kernels.get(k.name, k.kernel)
        return subnet[knob]

    @staticmethod
    def split_knobs(values: Mapping[str, object]) -> tuple[dict, dict, dict]:
        """Knob-keyed values as (per group, per stage, per elastic conv), the prefixes taken off."""
        widths = {k: v for k, v in values.items() if not k.startswith((DEPTH_KNOB, KERNEL_KNOB))}
        depth = {k[len(DEPTH_KNOB):]: v for k, v in values.items() if k.startswith(DEPTH_KNOB)}
        kernels = {k[len(KERNEL_KNOB):]: v for k, v in values.items() if k.startswith(KERNEL_KNOB)}
        return widths, depth, kernels

    def assign(self, subnet: Subnet, values: Mapping[str, int]) -> Subnet:
        """``subnet`` with the given knobs (widths; depths by ``"depth <stage>"``, kernels by ``"kernel <conv>"``)."""
        widths, depth, kernels = self.split_knobs(values)
        return self.canonical(subnet.replace(widths, depth=depth, kernels=kernels))

    def dropped(self, subnet: Subnet) -> set[str]:
        """The blocks ``subnet`` drops (none for a stage it does not name)."""
        return self.dropped_at(subnet.depth)

    def dropped_at(self, depth: Mapping[str, int]) -> set[str]:
        """The blocks a subnet keeping ``depth`` blocks per stage (all of a stage it does not name) drops."""
        return {b for st in self.stages for b in st.dropped(depth.get(st.name, len(st.blocks)))}

    def unused(self, subnet: Subnet) -> set[str]:
        """The knobs ``subnet`` does not use: those inside the blocks it drops."""
        return self.unused_at(subnet.depth)

    def unused_at(self, depth: Mapping[str, int]) -> set[str]:
        """The knobs a subnet keeping ``depth`` blocks per stage (all of a stage it does not name) does not use."""
        return {k for b in self.dropped_at(depth) for k in self.inner.get(b, ())} if self.inner else set()

    def canonical(self, subnet: Subnet) -> Subnet:
        """``subnet`` with every knob inside a dropped block at its narrowest choice (channel indices dropped).

        Subnets that differ only there are one network: same accuracy, same latency. The search's operators
        return this form, so it never scores or times one network twice under two hashes."""
        unused = self.unused(subnet)
        if not unused:
            return subnet
        widths, _, kernels = self.split_knobs({k: self._narrowest(k) for k in unused})
        keep = {g: i for g, i in subnet.indices.items() if g not in widths}
        return Subnet({**subnet.widths, **widths}, keep, subnet.depth, {**subnet.kernels, **kernels})

    def _narrowest(self, knob: str) -> int:
        if knob.startswith(KERNEL_KNOB):
            return self._kernel[knob[len(KERNEL_KNOB):]].choices[0]
        return self._by_name[knob].choices[0]

    def restricted(self, choices: Mapping[str, Iterable[int]], depth: Optional[Mapping[str, Iterable[int]]] = None,
                   kernels: Optional[Mapping[str, Iterable[int]]] = None) -> "SearchSpace":
        """A space whose named groups keep only the given widths, named stages the given depths and named convs the
        given kernel sizes (shrinking, bins)."""
        depth, kernels = depth or {}, kernels or {}
        elastic = []
        for k in self.kernels:
            keep = tuple(sorted({int(v) for v in kernels.get(k.name, k.choices)}))
            if set(keep) - set(k.choices) or not keep:
                raise SlimnasError(f"kernel sizes {sorted(set(keep) - set(k.choices)) or 'none'} are not choices of "
                                   f"conv {k.name!r}")
            elastic.append(KernelChoices(k.name, k.kernel, keep))
        if set(kernels) - set(self._kernel):
            raise SlimnasError(f"no conv with an elastic kernel is named {', '.join(sorted(set(kernels) - set(self._kernel))[:3])}")
        stages = []
        for st in self.stages:
            keep = tuple(sorted({int(d) for d in depth.get(st.name, st.choices)}))
            unknown = set(keep) - set(st.choices)
            if unknown or not keep:
                raise SlimnasError(f"depths {sorted(unknown) or 'none'} are not choices of stage {st.name!r}")
            stages.append(StageChoices(st.name, st.blocks, keep))
        unknown = [k for k in depth if k not in self._stage]
        if unknown:
            raise SlimnasError(f"no stage of skippable blocks is named {', '.join(unknown[:3])}")
        groups = []
        for g in self.groups:
            keep = tuple(sorted(set(choices.get(g.name, g.choices))))
            unknown = set(keep) - set(g.choices) if g.name in choices else set()
            if unknown or not keep:
                raise SlimnasError(f"widths {sorted(unknown) or 'none'} are not candidates of group {g.name!r}")
            groups.append(GroupChoices(g.name, g.width, keep))
        return SearchSpace(groups, stages, elastic, self.inner)

    # -- fixed points --------------------------------------------------------------------------------------
    def _full_depth(self) -> dict[str, int]:
        return {st.name: st.choices[-1] for st in self.stages}

    def _original_kernels(self) -> dict[str, int]:
        """Each elastic conv at its checkpoint kernel, or the choice nearest to it (a shrunk space may lack it)."""
        return {k.name: min(k.choices, key=lambda c: (abs(c - k.kernel), -c)) for k in self.kernels}

    def max(self) -> Subnet:
        """The widest widths, every block and the largest kernels."""
        return Subnet({g.name: g.choices[-1] for g in self.groups}, depth=self._full_depth(),
                      kernels={k.name: k.choices[-1] for k in self.kernels})

    def min(self) -> Subnet:
        """The narrowest widths, the fewest blocks of every stage and the smallest kernels."""
        return Subnet({g.name: g.choices[0] for g in self.groups}, depth={st.name: st.choices[0] for st in self.stages},
                      kernels={k.name: k.choices[0] for k in self.kernels})

    def original(self) -> Subnet:
        """The checkpoint's own widths, every block and its kernels (the widest subnet unless the space is broadened)."""
        return Subnet({g.name: g.width for g in self.groups}, depth=self._full_depth(), kernels=self._original_kernels())

    def uniform(self, ratio: float) -> Subnet:
        """Every group at the candidate nearest to ``ratio`` times its checkpoint width."""
        if ratio <= 0:
            raise SlimnasError(f"width ratio must be positive, got {ratio}")
        return Subnet({g.name: min(g.choices, key=lambda c: (abs(c - ratio * g.width), c)) for g in self.groups},
                      depth=self._full_depth(), kernels=self._original_kernels())

    # -- random operators ----------------------------------------------------------------------------------
    def sample(self, rng: Rng = None) -> Subnet:
        r = _rng(rng)
        widths = {g.name: r.choice(g.choices) for g in self.groups}
        depth = {st.name: r.choice(st.choices) for st in self.stages}
        return self.canonical(Subnet(widths, depth=depth, kernels={k.name: r.choice(k.choices) for k in self.kernels}))

    def mutate(self, subnet: Subnet, prob: float = 0.1, rng: Rng = None) -> Subnet:
        """Resample each group's width, and each stage's depth, with probability ``prob``."""
        r = _rng(rng)
        widths = subnet.widths
        for g in self.groups:
            if r.random() < prob:
                widths[g.name] = r.choice(g.choices)
        depth = {**self._full_depth(), **subnet.depth}
        for st in self.stages:
            if r.random() < prob:
                depth[st.name] = r.choice(st.choices)
        kernels = {**self._original_kernels(), **subnet.kernels}
        for k in self.kernels:
            if r.random() < prob:
                kernels[k.name] = r.choice(k.choices)
        return self.canonical(subnet.replace(widths, depth=depth, kernels=kernels))

    def crossover(self, a: Subnet, b: Subnet, rng: Rng = None) -> Subnet:
        """Each group's width (and channel indices), and each stage's depth, from one parent or the other, at random."""
        r = _rng(rng)
        widths, indices, depth = {}, {}, {}
        for g in self.groups:
            src = a if r.random() < 0.5 else b
            widths[g.name] = src[g.name]
            if g.name in src.indices:
                indices[g.name] = src.indices[g.name]
        for st in self.stages:
            src = a if r.random() < 0.5 else b
            depth[st.name] = src.depth.get(st.name, st.choices[-1])
        kernels = {}
        for k in self.kernels:
            src = a if r.random() < 0.5 else b
            kernels[k.name] = src.kernels.get(k.name, k.kernel)
        return self.canonical(Subnet(widths, indices, depth, kernels))

    def validate(self, subnet: Subnet) -> Subnet:
        """Check every group is known and every width one of its candidates; missing groups get their original width
        (and missing stages all their blocks).

        A width between candidates is refused here: the latency predictor and the cost tables have no entry for
        it, and would fail later with a less helpful message.
        """
        unknown = [k for k in subnet if k not in self._by_name]
        if unknown:
            raise SlimnasError(f"subnet names unknown groups: {', '.join(unknown[:5])}; run `slimnas inspect` for the names")
        widths = {}
        for g in self.groups:
            w = subnet.widths.get(g.name, g.width)
            if w not in g.choices:  # the latency table and the cost model know candidate widths only
                raise SlimnasError(f"width {w} of group {g.name!r} is not one of its candidates "
                                   f"{', '.join(map(str, g.choices))}; run `slimnas inspect` for each group's widths")
            widths[g.name] = w
        for name, idx in subnet.indices.items():
            if max(idx, default=0) >= self._by_name[name].max_width:
                raise SlimnasError(f"channel index {max(idx)} of group {name!r} is beyond its {self._by_name[name].max_width} channels")
        unknown = [k for k in subnet.depth if k not in self._stage]
        if unknown:
            what = "this space has no stages (convert with depth=True)" if not self.stages else \
                f"its stages are {', '.join(self._stage)}"
            raise SlimnasError(f"subnet names unknown stages of skippable blocks: {', '.join(unknown[:5])}; {what}")
        depth = {}
        for st in self.stages:
            d = subnet.depth.get(st.name, st.choices[-1])
            if d not in st.choices:
                raise SlimnasError(f"depth {d} of stage {st.name!r} is not one of its choices "
                                   f"{', '.join(map(str, st.choices))} (blocks kept of {len(st.blocks)})")
            depth[st.name] = d
        unknown = [k for k in subnet.kernels if k not in self._kernel]
        if unknown:
            what = "this space has no elastic kernels (convert with kernel_sizes=(3, 5, 7))" if not self.kernels else \
                "`slimnas inspect --kernel-sizes` lists the convs that have one"
            raise SlimnasError(f"subnet names convs without an elastic kernel: {', '.join(unknown[:5])}; {what}")
        kernels, default = {}, self._original_kernels()
        for k in self.kernels:
            v = subnet.kernels.get(k.name, default[k.name])
            if v not in k.choices:
                raise SlimnasError(f"kernel size {v} of conv {k.name!r} is not one of its choices "
                                   f"{', '.join(map(str, k.choices))}")
            kernels[k.name] = v
        return Subnet(widths, subnet.indices, depth, kernels)
