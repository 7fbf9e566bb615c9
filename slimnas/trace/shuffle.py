"""Channel shuffle (ShuffleNet): tensors whose channels are interleaved one by one, and how they narrow.

ShuffleNetV2's unit is ``x1, x2 = x.chunk(2)``, ``out = shuffle(cat(x1, branch(x2)))``, where ``shuffle`` views
the channels as ``(2, C/2)``, transposes and flattens: ``out[2i] = in[i]``, ``out[2i+1] = in[C/2+i]``. A channel
made in one unit passes on untouched through several shuffles and chunks until one unit's branch (or the next
stage) consumes it. No run of segments describes such a tensor, and at a narrower width the same ops route the
channels differently: which of a producer's channels reach which consumer depends on the width.

Rules (:class:`ShuffleRules`, part of the channel analysis):

- ``view(b, g, C/g, h, w)``, ``transpose(1, 2)``, ``view(b, C, h, w)`` is a shuffle. Every space it interleaves
  is tied into one channel group: the unit's equal halves must keep equal widths, so a stage keeps one width
  (as ShuffleNet's stages do). The result carries a *route*: the recipe of cats, shuffles and chunks from the
  producers' outputs (:func:`evaluate` replays it at any width).
- ``chunk``, ``cat``, depthwise convs, norms, activations and pooling carry the route on; a conv or linear
  consumes it. Anything else that meets a routed tensor (an add, a slice, a flatten, a permute) freezes it.

Narrowing (:class:`RoutedGroup`): the exported model is the same architecture at a narrower width, and its own
shuffles route the channels. So each producer keeps, for every consumer, as many channels as the narrow network
sends there, chosen by importance among those of its channels that went there in the original: every consumer
then meets the channels its weights were trained on. A width at which the narrow network would send a
consumer more of a producer's channels than the original did is not a candidate (at most a few per stage).
The channels are chosen, not reordered: reordering a producer's output would send channels to other consumers.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import torch
import torch.fx as fx

from .layout import Layout, Seg

# A recipe is a nested tuple: ("leaf", key, size) | ("cat", (recipe, ...)) | ("shuffle", groups, recipe)
#                            | ("chunk", recipe, parts, index).
# ``key`` is a channel space during the analysis and a stable tag (the producer and offset) in the result.
Recipe = tuple


def leaf(key: Any, size: int) -> Recipe:
    return ("leaf", key, int(size))


def recipe_of(layout: Layout) -> Recipe:
    """The recipe of a tensor: its route, or the cat of its segments' spaces."""
    if layout.route is not None:
        return layout.route
    leaves = tuple(leaf(s.space, s.size) for s in layout.segs)
    return leaves[0] if len(leaves) == 1 else ("cat", leaves)


def relabel(recipe: Recipe, key: Callable[[Any], Any]) -> Recipe:
    """The same recipe with every leaf's key mapped (spaces to tags)."""
    kind = recipe[0]
    if kind == "leaf":
        return ("leaf", key(recipe[1]), recipe[2])
    if kind == "cat":
        return ("cat", tuple(relabel(r, key) for r in recipe[1]))
    if kind == "shuffle":
        return ("shuffle", recipe[1], relabel(recipe[2], key))
    return ("chunk", relabel(recipe[1], key), recipe[2], recipe[3])


def leaves(recipe: Recipe) -> list[Recipe]:
    kind = recipe[0]
    if kind == "leaf":
        return [recipe]
    if kind == "cat":
        return [x for r in recipe[1] for x in leaves(r)]
    return leaves(recipe[2] if kind == "shuffle" else recipe[1])


def evaluate(recipe: Recipe, width: Optional[int] = None, memo: Optional[dict] = None) -> tuple:
    """The channels of the tensor, in order, as ``(key, k)``: the ``k``-th output channel of leaf ``key``.

    ``width`` replays the recipe with every leaf ``width`` channels wide (None: their traced sizes), which is
    what the same ops do at that width.
    """
    memo = {} if memo is None else memo
    if recipe in memo:
        return memo[recipe]
    kind = recipe[0]
    if kind == "leaf":
        n = recipe[2] if width is None else width
        out = tuple((recipe[1], k) for k in range(n))
    elif kind == "cat":
        out = tuple(e for r in recipe[1] for e in evaluate(r, width, memo))
    elif kind == "shuffle":
        x, g = evaluate(recipe[2], width, memo), recipe[1]
        if len(x) % g:
            raise ValueError(f"a shuffle of {len(x)} channels in {g} groups")
        per = len(x) // g
        out = tuple(x[k * per + i] for i in range(per) for k in range(g))
    else:
        x, parts, i = evaluate(recipe[1], width, memo), recipe[2], recipe[3]
        if len(x) % parts:
            raise ValueError(f"a chunk of {len(x)} channels in {parts} parts")
        per = len(x) // parts
        out = x[i * per:(i + 1) * per]
    memo[recipe] = out
    return out


def routed(recipe: Recipe, unit: Seg, size: int) -> Layout:
    """A routed layout of ``size`` channels whose spaces are all tied to ``unit``'s group."""
    return Layout((unit,) * (size // unit.size), 1, recipe)


@dataclass(frozen=True)
class Grouped:
    """A tensor viewed as ``(groups, C/groups)`` channels (the first step of a shuffle), transposed or not yet."""

    layout: Layout
    groups: int
    transposed: bool = False


def _shape(node: Any) -> Optional[tuple[int, ...]]:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(int(d) for d in meta.shape) if hasattr(meta, "shape") else None


class ShuffleRules:
    """The shuffle rules, mixed into the analysis (which provides ``sp``, ``unsupported``, ``notes``...)."""

    routed_spaces: set

    def _tie_all(self, node: fx.Node, layouts: list[Layout]) -> Optional[Seg]:
        """Tie every space of ``layouts`` (segments and route leaves) into one group; they must have one size.
        Returns a segment of that group (the unit), or None after freezing them (sizes differ)."""
        spaces: dict[int, int] = {}
        for layout in layouts:
            for s in layout.segs:
                spaces[s.space] = s.size
            if layout.route is not None:
                for lf in leaves(layout.route):
                    spaces[lf[1]] = lf[2]
        if len(set(spaces.values())) != 1:
            self.unsupported(node, f"a channel shuffle of parts of unequal size ({sorted(set(spaces.values()))})")
            return None
        first = next(iter(spaces))
        for s in spaces:
            self.sp.union(first, s)
            self.routed_spaces.add(s)
        return Seg(first, spaces[first])

    def _routed_or_frozen(self, node: fx.Node, recipe: Recipe, unit: Seg, size: int) -> Optional[Layout]:
        """The routed layout, unless a channel occurs twice in it (``cat(x, x)``): one weight position each is
        what a routing plan gives."""
        try:
            ents = evaluate(recipe)
        except ValueError as exc:
            return self.unsupported(node, f"shuffled channels that do not divide ({exc})")
        if len(set(ents)) != len(ents):
            return self.unsupported(node, "shuffled channels that hold the same channel twice")
        return routed(recipe, unit, size)

    def shuffle_view(self, node: fx.Node, lin: Layout, groups: int) -> Any:
        """``view(b, g, C/g, h, w)`` of a tracked tensor: the first step of a shuffle."""
        if lin.inner != 1:
            return self.unsupported(node, "a grouped view of flattened channels")
        return Grouped(lin, groups)

    def shuffle_transpose(self, node: fx.Node, got: Grouped) -> Any:
        dims = sorted(int(d) % 5 for d in node.args[1:3]) if len(node.args) >= 3 else []
        if got.transposed or dims != [1, 2]:
            return self.unsupported(node, "a transpose of grouped channels other than the shuffle's (1, 2)")
        return Grouped(got.layout, got.groups, True)

    def shuffle_back(self, node: fx.Node, got: Grouped) -> Any:
        """``view(b, C, h, w)`` after the transpose: the interleaved channels, as a routed layout."""
        shape_in, shape_out = _shape(node.args[0]), _shape(node)
        if (not got.transposed or shape_in is None or shape_out is None or len(shape_out) != len(shape_in) - 1
                or shape_out[1] != got.layout.size or shape_out[2:] != shape_in[3:]):
            return self.unsupported(node, "grouped channels viewed back other than as a channel shuffle")
        unit = self._tie_all(node, [got.layout])
        if unit is None:
            return None
        return self._routed_or_frozen(node, ("shuffle", got.groups, recipe_of(got.layout)), unit, got.layout.size)

    def routed_cat(self, node: fx.Node, layouts: list[Layout]) -> Optional[Layout]:
        unit = self._tie_all(node, layouts)
        if unit is None:
            return None
        return self._routed_or_frozen(node, ("cat", tuple(recipe_of(lay) for lay in layouts)), unit,
                                      sum(lay.size for lay in layouts))

    def routed_chunk(self, node: fx.Node, lin: Layout, name: str, sizes: list[int]) -> Any:
        unit = lin.segs[0]
        if name != "chunk" or any(n != sizes[0] or n % unit.size for n in sizes):
            return self.unsupported(node, f"{name} of shuffled channels into parts other than whole equal chunks")
        return tuple(routed(("chunk", lin.route, len(sizes), k), unit, n) for k, n in enumerate(sizes))


# -- narrowing ---------------------------------------------------------------------------------------------------
class RoutedGroup:
    """The channels each layer of a routed group uses at each width (see the module's docstring).

    ``layouts`` are the group's routed layouts (after the analysis: leaves keyed by tags); ``votes`` gives, for
    each layout, per-position importance votes (already normalised per layer) to be summed per channel.
    """

    def __init__(self, layouts: list[Layout], votes: Optional[list[tuple[Recipe, torch.Tensor]]] = None):
        self.recipes = list(dict.fromkeys(lay.route for lay in layouts))
        self.width = leaves(self.recipes[0])[0][2]
        memo: dict = {}
        self.full = {r: evaluate(r, None, memo) for r in self.recipes}
        self.pos = {r: {e: i for i, e in enumerate(ents)} for r, ents in self.full.items()}
        score: dict[tuple, float] = defaultdict(float)
        for r, vote in votes or []:
            for e, v in zip(self.full[r], vote.tolist()):
                score[e] += v
        classes: dict[tuple, list] = defaultdict(list)  # (tag, the recipes it is in) -> its channels
        for (tag, j), member in self._membership(self.full).items():
            classes[(tag, member)].append(j)
        # most important first; ties keep the stored order
        self.classes = {c: sorted(js, key=lambda j, t=c[0]: (-score[(t, j)], j)) for c, js in classes.items()}
        self._plans: dict[int, Optional[dict[Recipe, torch.Tensor]]] = {}

    def _membership(self, evaluated: Mapping[Recipe, tuple]) -> dict[tuple, frozenset]:
        """Each channel ``(tag, k)``: the recipes (by index) it is in."""
        member: dict[tuple, set] = defaultdict(set)
        for i, r in enumerate(self.recipes):
            for e in evaluated[r]:
                member[e].add(i)
        return {e: frozenset(m) for e, m in member.items()}

    def plan(self, width: int) -> Optional[dict[Recipe, torch.Tensor]]:
        """Each layout's stored positions at ``width`` (in the order the narrow network's tensors have them), or
        None when the narrow network would route more of a producer's channels to a consumer than it had."""
        if width not in self._plans:
            self._plans[width] = self._plan(width)
        return self._plans[width]

    def feasible(self, width: int) -> bool:
        return width == self.width or self.plan(width) is not None

    def _plan(self, width: int) -> Optional[dict[Recipe, torch.Tensor]]:
        memo: dict = {}
        try:
            narrow = {r: evaluate(r, width, memo) for r in self.recipes}
        except ValueError:  # an odd chunk or shuffle at this width
            return None
        need: dict[tuple, list[int]] = defaultdict(list)
        for (tag, k), member in sorted(self._membership(narrow).items()):
            need[(tag, member)].append(k)
        if any(len(ks) > len(self.classes.get(c, ())) for c, ks in need.items()):
            return None
        chosen: dict[tuple, int] = {}  # (tag, k) -> the stored channel j it is
        for c, ks in need.items():
            for k, j in zip(ks, self.classes[c]):
                chosen[(c[0], k)] = j
        out = {}
        for r, ents in narrow.items():
            where = self.pos[r]
            out[r] = torch.tensor([where[(t, chosen[(t, k)])] for t, k in ents], dtype=torch.long)
        return out
