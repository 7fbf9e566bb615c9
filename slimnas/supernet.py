"""``convert``: a checkpoint becomes a width-searchable supernet, found by tracing.

The supernet is the user's own network (same class, same forward) in which every conv, BatchNorm and linear
layer of a searchable channel group is replaced by its dynamic counterpart. ``set_subnet`` tells each of them
which stored channels to use; :func:`slimnas.export_subnet` turns the active subnet back into a plain model.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .cost import CostModel
from .dynamic import DYNAMIC, Active, DynamicMixin, functional
from .dynamic.skip import SkippableBlock
from .errors import SlimnasError
from .importance import channel_importance, importance_order, routed_votes
from .space import KERNEL_KNOB, GroupChoices, KernelChoices, SearchSpace, SpaceConfig, StageChoices, candidate_widths
from .subnet import Subnet
from .trace import ChannelGraph, Layout, analyse, trace
from .trace.blocks import find_blocks, stages_of
from .trace.shuffle import RoutedGroup

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvertConfig:
    """Options of :func:`convert` beyond the search space."""

    space: SpaceConfig = field(default_factory=SpaceConfig)
    reorder: bool = True  # permute each group's channels into importance order (function-preserving)
    freeze: tuple[str, ...] = ()  # group names to keep at their checkpoint width
    # Grouped convs with as many outputs as inputs (ResNeXt, RegNet) searchable in whole conv groups; False keeps
    # them at their checkpoint width (frozen, as before issue 14).
    grouped: bool = True


def _input_example(input_shape: Union[int, Sequence[int]]) -> torch.Tensor:
    if isinstance(input_shape, int):
        input_shape = (3, input_shape, input_shape)
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 4:
        shape = shape[1:]
    if len(shape) != 3 or min(shape) < 1:
        raise SlimnasError(f"input_shape must be (C, H, W) or an image size, got {input_shape}")
    return torch.randn((1,) + shape)


def _prefix(idx: Optional[torch.Tensor]) -> Active:
    """An index tensor that just takes the first n positions becomes the int n (a view instead of a copy)."""
    if idx is None:
        return None
    n = idx.numel()
    if n and int(idx[-1]) == n - 1 and torch.equal(idx, torch.arange(n, device=idx.device)):
        return n
    return idx


class Supernet(nn.Module):
    """A network whose channel-group widths can be switched at run time.

    Build one with :func:`convert`. ``model`` is the user's network with dynamic layers; ``graph`` the traced
    channel groups; ``space`` the candidate widths of the searchable groups.
    """

    def __init__(self, model: nn.Module, graph: ChannelGraph, space: SearchSpace, input_shape: tuple[int, ...],
                 cost: CostModel, config: ConvertConfig, routes: Optional[dict[int, RoutedGroup]] = None):
        super().__init__()
        self.routes = routes or {}  # group index -> its routing plans (groups a channel shuffle routes)
        self.model = model
        self.graph = graph
        self.space = space
        self.input_shape = input_shape
        self.cost = cost
        self.config = config
        self.stored = stored_widths(graph, space)  # channels each group's layers hold (broadened ones included)
        self._group_index = {g.name: i for i, g in enumerate(graph.groups)}
        self._blocks = {b: model.get_submodule(b) for st in space.stages for b in st.blocks}
        self._kernels = {k.name: model.get_submodule(k.name) for k in space.kernels}  # elastic convs
        self._active: Subnet = space.max()

    # -- layers ------------------------------------------------------------------------------------------------
    def layers(self) -> dict[str, DynamicMixin]:
        return {name: self.model.get_submodule(name) for name in self.graph.layers}

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    # -- choosing a subnet -------------------------------------------------------------------------------------
    @property
    def active(self) -> Subnet:
        return self._active

    def set_subnet(self, subnet: Subnet) -> None:
        """Make ``subnet`` the active one: every dynamic layer now computes with its channels only."""
        subnet = self.space.validate(subnet)
        device = next(self.model.parameters()).device
        select: dict[int, Active] = {}
        for name, width in subnet.widths.items():
            gi = self._group_index[name]
            group = self.graph.groups[gi]
            if name in subnet.indices and group.narrow:
                raise SlimnasError(f"subnet indices for group {name!r} cannot be given: its grouped convs keep their "
                                   "group count (conv_groups='narrow'), so the width alone decides its channels")
            if group.narrow and width != self.stored[gi]:  # the first width/n channels of each of the n conv groups
                q, n = group.multiple, group.width // group.multiple
                select[gi] = (torch.arange(n, device=device)[:, None] * q
                              + torch.arange(width // n, device=device)[None, :]).reshape(-1)
                continue
            if name in subnet.indices and gi in self.routes:
                raise SlimnasError(f"subnet indices for group {name!r} cannot be given: its channels pass a channel "
                                   "shuffle, and the width alone decides which of them each layer uses")
            if name in subnet.indices:
                idx, q = subnet.indices[name], self.graph.groups[gi].multiple
                if q > 1 and set(idx) != {j // q * q + i for j in idx for i in range(q)}:
                    raise SlimnasError(f"subnet indices for group {name!r} must be whole conv groups of {q} channels "
                                       f"(it feeds a grouped conv), got {list(idx)}: list blocks b*{q}..b*{q}+{q - 1}")
                select[gi] = torch.tensor(idx, dtype=torch.long, device=device)
            elif width != self.stored[gi]:
                select[gi] = width
        tensors: dict[int, torch.Tensor] = {}

        def as_tensor(gi: int) -> Optional[torch.Tensor]:
            sel = select.get(gi)
            if sel is None or isinstance(sel, torch.Tensor):
                return sel
            if gi not in tensors:
                tensors[gi] = torch.arange(sel, device=device)
            return tensors[gi]

        def active(layout: Optional[Layout]) -> Active:
            if layout is None:
                return None
            if layout.route is not None:  # a routed group's layer: its positions at this width from the plan
                gi = layout.segs[0].space
                if gi not in select:
                    return None
                return _prefix(self.routes[gi].plan(select[gi])[layout.route].to(device))
            if len(layout.segs) == 1 and layout.inner == 1:
                return select.get(layout.segs[0].space)
            if not any(seg.space in select for seg in layout.segs):
                return None
            idx = layout.index(self.stored, as_tensor)
            return _prefix(idx.to(device)) if idx is not None else None

        for name, spec in self.graph.layers.items():
            layer = self.model.get_submodule(name)
            layer.set_active(active(spec.in_layout), active(spec.out_layout))
        if self.graph.patches:  # channel counts the model's own ops hold (split sizes, slice bounds)
            widths = {i: subnet.widths.get(g.name, g.width) for i, g in enumerate(self.graph.groups)}
            for patch in self.graph.patches:
                patch.apply(self.model, widths)
        dropped = self.space.dropped(subnet)
        for name, block in self._blocks.items():
            block.skipped = name in dropped
        for name, conv in self._kernels.items():
            k = subnet.kernels[name]
            conv.active_kernel = None if k == conv.kernel_size[0] else k
        self._active = subnet

    @contextlib.contextmanager
    def use(self, subnet: Subnet) -> Iterator["Supernet"]:
        """Run a block with ``subnet`` active, then restore the previous one."""
        previous = self._active
        self.set_subnet(subnet)
        try:
            yield self
        finally:
            self.set_subnet(previous)

    # -- cost --------------------------------------------------------------------------------------------------
    def widths_matrix(self, subnets: Sequence[Subnet]) -> np.ndarray:
        """``[n_subnets, n_groups + n_blocks + n_kernels]``: each group's width, then 1 for each kept block (0 for a
        dropped one), then each elastic conv's kernel area (k·k)."""
        return self.cost.matrix([s.widths for s in subnets], [self.space.dropped(s) for s in subnets],
                                [s.kernels for s in subnets])

    def flops(self, subnet: Optional[Subnet] = None) -> float:
        """Multiply-accumulates of one forward pass of one image (thop's convention)."""
        return float(self.cost.flops(self.widths_matrix([subnet or self._active]))[0])

    def params(self, subnet: Optional[Subnet] = None) -> float:
        return float(self.cost.params(self.widths_matrix([subnet or self._active]))[0])

    def extra_repr(self) -> str:
        n = len(self.space)
        depth = f", {len(self._blocks)} skippable blocks in {len(self.space.stages)} stages" if self._blocks else ""
        depth += f", {len(self._kernels)} elastic kernels" if self._kernels else ""
        return f"{len(self.graph.groups)} channel groups, {n} searchable{depth}, {self.space.size():.3g} subnets"


def _inner_knobs(graph: ChannelGraph, stages: Sequence[StageChoices],
                 elastic: Sequence[KernelChoices]) -> dict[str, list[str]]:
    """The searchable groups (and elastic convs, as ``"kernel <conv>"`` knobs) whose every layer is inside one
    skippable block, by block: a subnet dropping the block does not use them. A group a channel-count patch
    outside the block reads is never inner."""
    if not stages:
        return {}
    def inside(name: str, block: str) -> bool:
        return name == block or name.startswith(block + ".")

    patched: dict[int, set[str]] = {}
    for patch in graph.patches:
        for gi in patch.spaces:
            patched.setdefault(gi, set()).add(patch.module)
    out: dict[str, list[str]] = {}
    for st in stages:
        for b in st.blocks:
            knobs = [g.name for gi, g in enumerate(graph.groups)
                     if g.searchable and g.members and all(inside(layer, b) for layer, _ in g.members)
                     and all(inside(m, b) for m in patched.get(gi, ()))]
            knobs += [KERNEL_KNOB + k.name for k in elastic if inside(k.name, b)]
            if knobs:
                out[b] = knobs
    return out


def stored_widths(graph: ChannelGraph, space: SearchSpace) -> dict[int, int]:
    """Channels stored per group: the widest candidate of a searchable group, else the checkpoint width."""
    return {i: (space[g.name].max_width if g.name in space else g.width) for i, g in enumerate(graph.groups)}


def _in_multiples(widths: Sequence[int], group) -> tuple[int, ...]:
    """Candidate widths of a group feeding a grouped conv: whole conv groups (multiples of ``group.multiple``).

    Each candidate goes to the nearest multiple, but the smallest one rounds down (to one conv group at least): the
    space's narrowest subnet is never wider than its smallest ratio asks. With wide conv groups (RegNetX-8GF: 120
    channels, a 720-channel stage of six) rounding 0.25 x 720 = 180 up to two groups left that stage at a third.
    """
    q = group.multiple
    if q == 1:
        return tuple(widths)
    out = {group.width}
    lowest = min(widths)
    for w in widths:
        if w > group.width:
            out.add(max(group.width, w // q * q))
        else:
            out.add(min(group.width, max(q, (w // q if w == lowest else round(w / q)) * q)))
    return tuple(sorted(out))


def _narrow_groups(graph: ChannelGraph, modules: dict[str, nn.Module]) -> None:
    """Mark the groups whose grouped convs keep their group count (``conv_groups="narrow"``): every grouped conv
    of the group is a plain ``nn.Conv2d`` with the same group count (a functional one keeps whole groups)."""
    for gi, g in enumerate(graph.groups):
        if g.multiple == 1 or not g.searchable:
            continue
        convs = [graph.layers[n] for n, role in g.members if graph.layers[n].kind == "gconv"]
        counts = {modules[spec.name].groups for spec in convs}
        if convs and not any(spec.op for spec in convs) and counts == {g.width // g.multiple}:
            g.narrow = True
        else:
            logger.info("group %s keeps whole conv groups (its grouped convs are functional or differ)", g.name)


def _narrowed(widths: Sequence[int], group) -> tuple[int, ...]:
    """Candidate widths of a group whose conv groups each narrow: multiples of the group count, at most the
    checkpoint's width; the smallest rounds down (one channel per conv group at least)."""
    n = group.width // group.multiple
    lowest = min(widths)
    out = {group.width}
    for w in widths:
        if w < group.width:
            out.add(max(n, (w // n if w == lowest else round(w / n)) * n))
    return tuple(sorted(out))


def _routable(widths: Sequence[int], width: int, divisor: int, route: RoutedGroup) -> tuple[int, ...]:
    """Candidate widths of a group a channel shuffle routes: never broadened (a shuffle routes only the channels
    it had), and each candidate the routing cannot narrow to replaced by the nearest narrower one it can (a
    multiple of ``divisor`` where one is routable, else any)."""
    out = {width}
    for w in widths:
        if w >= width:
            continue
        pick = next((v for v in range(w - w % divisor, 0, -divisor) if route.feasible(v)), None)
        pick = pick or next((v for v in range(w, 0, -1) if route.feasible(v)), None)
        if pick:
            out.add(pick)
    return tuple(sorted(out))


def _normalised_over(graph: ChannelGraph, group) -> bool:
    """A LayerNorm or GroupNorm computes statistics over the group's channels: channels added by broadening would
    change them (even zero ones), so such a group is never made wider than its checkpoint."""
    return any(role == "bn" and graph.layers[name].op in ("layer_norm", "group_norm") for name, role in group.members)


def _repeats(graph: ChannelGraph) -> dict[int, int]:
    """How many times over a layer sees each group at most: a group in several parts of one tensor (GhostNet's
    map and its cheap copy, CSP's equal halves, a residual made of both) counts once per part."""
    out: dict[int, int] = {}
    for spec in graph.layers.values():
        for layout in (spec.in_layout, spec.out_layout):
            if layout is not None:
                for gi, n in Counter(seg.space for seg in layout.segs).items():
                    out[gi] = max(out.get(gi, 1), n)
    return out


def _elastic_kernels(graph: ChannelGraph, modules: dict[str, nn.Module], sizes: Sequence[int]) -> list[KernelChoices]:
    """The depthwise convs that may change their kernel size: plain ``nn.Conv2d`` modules (not a functional conv, not a
    subclass that pads itself) with a square odd kernel, zero "same" padding (so every size keeps the output's size),
    each choosing from ``sizes`` and its own size."""
    out = []
    for name, spec in graph.layers.items():
        m = modules[name]
        if spec.kind != "dwconv" or spec.op or type(m) is not nn.Conv2d or m.padding_mode != "zeros":
            continue
        kh, kw = m.kernel_size
        if kh != kw or kh % 2 == 0 or isinstance(m.padding, str) or m.dilation[0] != m.dilation[1]:
            continue
        if tuple(m.padding) != (m.dilation[0] * (kh - 1) // 2,) * 2:
            continue
        out.append(KernelChoices(name, kh, tuple(sorted(set(sizes) | {kh}))))
    if not out:
        logger.info("kernel_sizes given but no depthwise conv has a square odd kernel with 'same' zero padding")
    return out


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)


def convert(model: nn.Module, input_shape: Union[int, Sequence[int]] = 224,
            config: Optional[ConvertConfig] = None, **space_options) -> Supernet:
    """Turn ``model`` into a :class:`Supernet` (the model itself is left untouched).

    ``input_shape`` is ``(C, H, W)`` or an image size. Search-space options (``ratios``, ``divisor``,
    ``max_ratio``, ``depth``) may be passed as keywords or in ``config.space``; ``depth=True`` also lets each stage
    of skippable residual blocks keep only its first k blocks (see :mod:`slimnas.trace.blocks`). Groups whose channels the tracer cannot
    follow are frozen and listed in ``supernet.graph.notes``.

    >>> import torchvision, slimnas
    >>> net = slimnas.convert(torchvision.models.mobilenet_v2(num_classes=10), input_shape=32)
    >>> net.set_subnet(net.space.uniform(0.5))
    """
    if not isinstance(model, nn.Module):
        raise SlimnasError(f"convert() needs a torch.nn.Module, got {type(model).__name__}; see slimnas.load_model")
    config = config or ConvertConfig()
    if space_options:
        fields = {k: v for k, v in space_options.items() if v is not None}
        if "ratios" in fields:
            fields["ratios"] = tuple(float(r) for r in fields["ratios"])
        try:
            space_config = SpaceConfig(**{**config.space.__dict__, **fields})
        except TypeError as exc:
            raise SlimnasError(f"unknown search-space option ({exc})") from None
        config = ConvertConfig(space_config, config.reorder, config.freeze, config.grouped)
    example = _input_example(input_shape)
    model = copy.deepcopy(model)
    gm, notes = trace(model, example)
    graph = analyse(gm, notes, grouped=config.grouped)
    for name in config.freeze:
        try:
            graph.group(name).frozen = graph.group(name).frozen or "frozen by request"
        except KeyError:
            raise SlimnasError(f"cannot freeze {name!r}: no such channel group (see `slimnas inspect`)") from None

    originals = dict(model.named_modules())
    if config.space.conv_groups == "narrow":
        _narrow_groups(graph, originals)
    layers: dict[str, DynamicMixin] = {}
    for name, spec in graph.layers.items():
        module = originals[name]
        if spec.op:  # found by its functional op: the module's own forward runs on sliced parameters
            layers[name] = functional.wrap(module, spec.kind, dict(spec.tensors))
            _replace(model, name, layers[name])
            continue
        dyn = DYNAMIC.get(type(module))
        if dyn is None:  # pragma: no cover - the analysis only creates layer specs for registered types
            raise SlimnasError(f"no dynamic layer for {type(module).__name__} ({name})")
        layers[name] = dyn.wrap(module)
        if spec.kind == "gconv" and graph.groups[spec.out_layout.segs[0].space].narrow:
            layers[name].fixed_groups = module.groups
        _replace(model, name, layers[name])

    if config.reorder:
        order = importance_order(channel_importance(graph, layers), {i: g.multiple for i, g in enumerate(graph.groups)},
                                 frozenset(i for i, g in enumerate(graph.groups) if g.narrow))
        sizes = {i: g.width for i, g in enumerate(graph.groups)}
        for name, spec in graph.layers.items():
            perm = lambda layout: layout.index(sizes, order.get) if layout is not None else None  # noqa: E731
            layers[name].permute(perm(spec.in_layout) if spec.kind != "bn" else None, perm(spec.out_layout))

    routes = {i: RoutedGroup([lay for spec in graph.layers.values() for lay in (spec.in_layout, spec.out_layout)
                              if lay is not None and lay.route is not None and lay.segs[0].space == i],
                             routed_votes(graph, layers, i))
              for i, g in enumerate(graph.groups) if g.searchable and g.routed}
    choices, capped = [], []
    repeats = _repeats(graph)
    for i, g in enumerate(graph.groups):
        if g.searchable:
            space_config = config.space
            if repeats.get(i, 1) > 1:  # seen k times over by a layer: rounded to divisor/k, the layer sees multiples
                space_config = dataclasses.replace(space_config, divisor=max(1, space_config.divisor // repeats[i]))
            widths = candidate_widths(g.width, space_config)
            if _normalised_over(graph, g) and max(widths) > g.width:
                widths = tuple(w for w in widths if w <= g.width)
                capped.append(g.name)
            if i in routes:
                widths = _routable(widths, g.width, space_config.divisor, routes[i])
            if g.narrow:  # every conv group narrows: multiples of the group count, never broadened
                choices.append(GroupChoices(g.name, g.width, _narrowed(widths, g)))
                continue
            choices.append(GroupChoices(g.name, g.width, _in_multiples(widths, g)))
    if capped:
        logger.info("%d groups normalised over their channels (LayerNorm, GroupNorm) are not broadened: %s",
                    len(capped), ", ".join(capped))
    stages = []
    if config.space.depth:
        stages = [StageChoices(st.name, st.blocks, tuple(range(len(st.blocks) + 1))) for st in stages_of(find_blocks(gm))]
        if not stages:
            logger.info("depth=True but %s has no skippable residual blocks: the space is width only", type(model).__name__)
    elastic = _elastic_kernels(graph, originals, config.space.kernel_sizes) if config.space.kernel_sizes else []
    space = SearchSpace(choices, stages, elastic, _inner_knobs(graph, stages, elastic))

    # Broadening: make room for channels beyond the checkpoint's width (function-preserving at the start).
    stored = stored_widths(graph, space)
    grown = {i for i, g in enumerate(graph.groups) if stored[i] > g.width}
    if grown:
        keep = {i: torch.arange(g.width) for i, g in enumerate(graph.groups) if i in grown}
        for name, spec in graph.layers.items():
            def where(layout: Optional[Layout]) -> tuple[Optional[torch.Tensor], int]:
                if layout is None:
                    return None, 0
                return layout.index(stored, keep.get), layout.width(stored)
            in_pos, in_size = where(spec.in_layout)
            out_pos, out_size = where(spec.out_layout)
            layers[name].grow(in_pos, out_pos, in_size, out_size)

    for k in elastic:  # the largest kernel stored, the checkpoint's in its centre (function-preserving)
        layers[k.name].grow_kernel(k.choices[-1])
    for st in stages:
        for b in st.blocks:
            _replace(model, b, SkippableBlock(model.get_submodule(b)))
    cost = CostModel(graph, originals, [b for st in stages for b in st.blocks], {k.name: k.kernel for k in elastic})
    shape = tuple(example.shape[1:])
    net = Supernet(model, graph, space, shape, cost, config, routes)
    net.set_subnet(space.max())
    return net
