"""Parts of a tensor's channels: ``split``, ``chunk`` and slicing along dim 1, the rules of the channel analysis.

A part that begins or ends inside a channel space needs that space created in parts where it is produced
(:func:`slimnas.trace.groups.analyse` iterates until no new cut is needed); each part is then a space of its
own: its own group, unless an add or an equal-size split ties it to another. A slice that keeps every channel
(GhostNet's ``cat(...)[:, :out_chs]`` when ``out_chs`` is the cat's size) passes the layout on.

The channel counts such an op holds as constants (a split's sizes, a slice's bounds: fx bakes in what
``self.splits`` or ``self.in_channels`` was) are recorded as :class:`~slimnas.trace.constants.Site`\\ s: at a
subnet's widths they must change, which :mod:`slimnas.trace.constants` arranges through the module attribute
they come from. ``chunk`` needs no constant: its parts are equal and it divides whatever it is given.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

import torch.fx as fx

from .constants import Site
from .layout import Layout


def boundaries(layout: Layout) -> list[int]:
    """Channel offsets of the segment edges of ``layout``, 0 and its channel count included (``inner`` aside)."""
    out = [0]
    for seg in layout.segs:
        out.append(out[-1] + seg.size)
    return out


def take(layout: Layout, start: int, stop: int) -> Layout:
    """The segments of ``layout`` between two of its segment edges."""
    segs, offset = [], 0
    for seg in layout.segs:
        if offset >= start and offset + seg.size <= stop:
            segs.append(seg)
        offset += seg.size
    return Layout(tuple(segs), layout.inner)


def _module_of(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def _tensor_meta_sizes(node: fx.Node) -> Optional[list[int]]:
    metas = node.meta.get("tensor_meta")
    if not isinstance(metas, (tuple, list)) or not all(hasattr(m, "shape") and len(m.shape) >= 2 for m in metas):
        return None
    return [int(m.shape[1]) for m in metas]


def _argument(node: fx.Node, pos: int, names: Iterable[str]) -> tuple[Any, tuple]:
    """An op's argument by position or keyword, with its path in the node's arguments (see constants.py)."""
    if len(node.args) > pos:
        return node.args[pos], ("args", pos)
    for name in names:
        if name in node.kwargs:
            return node.kwargs[name], ("kwargs", name)
    return None, ()


class PartRules:
    """The split/chunk/slice rules, mixed into the analysis (which provides ``layout``, ``cut``, ``tie``...)."""

    layout: dict
    sites: list

    def align(self, layout: Layout, edges: Iterable[int]) -> bool:
        """Ask for the cuts that make each offset in ``edges`` a segment edge of ``layout``. True if any is new:
        the pass is then provisional (the next one creates the parts)."""
        new = False
        offset = 0
        for seg in layout.segs:
            for e in edges:
                if offset < e < offset + seg.size:
                    new = self.cut(seg, e - offset) or new
            offset += seg.size
        return new

    def aligned(self, layout: Layout, edges: Iterable[int]) -> Optional[bool]:
        """None when every offset in ``edges`` is a segment edge of ``layout``; True when cuts were asked for
        (the pass is provisional); False when they cannot be made (the caller freezes)."""
        if self.align(layout, edges):
            return True
        return None if set(edges) <= set(boundaries(layout)) else False

    def site(self, node: fx.Node, path: tuple, value: int, layout: Layout) -> None:
        self.sites.append(Site(node.name, _module_of(node), path, int(value), tuple(s.space for s in layout.segs)))

    def _pending(self, node: fx.Node, sizes: list[int]) -> tuple:
        """Stand-ins for parts whose cuts the next pass makes (this pass's result is not used)."""
        return tuple(self.spaces_of(f"pending:{node.name}.{k}", n, "channel cut pending") for k, n in enumerate(sizes))

    def _split(self, node: fx.Node, name: str) -> Any:
        x = node.args[0] if node.args else node.kwargs.get("input", node.kwargs.get("tensor"))
        lin = self.layout.get(x) if isinstance(x, fx.Node) else None
        meta = x.meta.get("tensor_meta") if isinstance(x, fx.Node) else None
        shape = meta.shape if hasattr(meta, "shape") else None
        sizes = _tensor_meta_sizes(node)
        if name == "split":
            arg, path = _argument(node, 1, ("split_size_or_sections", "split_size"))
        else:
            arg, path = _argument(node, 1, ("chunks",))
        dim, _ = _argument(node, 2, ("dim",))
        dim = 0 if dim is None else dim
        if not isinstance(lin, Layout) or shape is None or sizes is None or not isinstance(dim, int):
            return self.unsupported(node, f"{name} of an untracked tensor")
        dim %= len(shape)
        if dim >= 2:
            return tuple(lin for _ in sizes)  # a spatial split: every part has all the channels
        if dim == 0:
            return self.unsupported(node, f"{name} of the batch dimension")
        if lin.inner != 1:
            return self.unsupported(node, f"{name} of flattened channels")
        if lin.route is not None:  # shuffled channels (see .shuffle)
            return self.routed_chunk(node, lin, name, sizes)
        if not (isinstance(arg, int) or (isinstance(arg, (list, tuple)) and all(isinstance(a, int) for a in arg))):
            return self.unsupported(node, f"{name} with computed sizes")
        equal = name == "chunk" or isinstance(arg, int)
        if equal and any(n != sizes[0] for n in sizes):
            return self.unsupported(node, f"{name} into unequal parts ({', '.join(map(str, sizes))} channels)")
        edges = [0]
        for n in sizes:
            edges.append(edges[-1] + n)
        state = self.aligned(lin, edges)
        if state is not None:
            return self._pending(node, sizes) if state else self.unsupported(node, f"{name} inside a channel space "
                                                                                   "that could not be cut")
        parts = tuple(take(lin, a, b) for a, b in zip(edges, edges[1:], strict=False))
        if equal:  # equal parts at every width: each is the same group (a chunk divides what it gets)
            for part in parts[1:]:
                self.tie(parts[0], part, node)
            if name == "split":
                self.site(node, path, arg, parts[0])
        else:
            for k, part in enumerate(parts):
                self.site(node, path + (k,), arg[k], part)
        return parts

    def _slice(self, node: fx.Node, lin: Layout) -> Optional[Layout]:
        """``x[:, a:b]`` (and spatial slicing): the channels between a and b."""
        index = node.args[1]
        index = index if isinstance(index, tuple) else (index,)
        src = node.args[0]
        shape = src.meta.get("tensor_meta").shape if hasattr(src.meta.get("tensor_meta"), "shape") else None
        full = slice(None, None, None)
        if shape is None or not index or index[0] != full or any(
                not (isinstance(i, slice) or i is Ellipsis) for i in index[1:]):
            return self.unsupported(node, "indexing a tensor")
        if len(index) == 1 or index[1] is Ellipsis or index[1] == full:
            return lin
        ch = index[1]
        bounds = (ch.start, ch.stop)
        if ch.step not in (None, 1) or not all(v is None or (isinstance(v, int) and v >= 0) for v in bounds):
            return self.unsupported(node, "a channel slice with a step, negative or computed bounds")
        n = int(shape[1])
        start = ch.start or 0
        stop = n if ch.stop is None else min(ch.stop, n)
        if start >= stop:
            return self.unsupported(node, "an empty channel slice")
        if lin.route is not None and not (start == 0 and stop == n and ch.stop is None):
            return self.unsupported(node, "a channel slice of shuffled channels")
        if start == 0 and stop == n:
            if lin.inner != 1 and ch.stop is not None:
                return self.unsupported(node, "a bounded slice of flattened channels")
            part = lin
        elif lin.inner != 1:
            return self.unsupported(node, "a slice of flattened channels")
        else:
            state = self.aligned(lin, (start, stop))
            if state is not None:
                return self._pending(node, [stop - start])[0] if state else self.unsupported(
                    node, "a channel slice inside a channel space that could not be cut")
            part = take(lin, start, stop)
        if ch.start not in (None, 0):
            self.site(node, ("args", 1, 1, "start"), ch.start, take(lin, 0, start))
        if ch.stop is not None:  # a stop at or past the end follows the whole width
            self.site(node, ("args", 1, 1, "stop"), ch.stop, take(lin, 0, stop) if stop < n else lin)
        return part
