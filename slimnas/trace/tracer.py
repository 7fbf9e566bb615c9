"""Trace a model with torch.fx, falling back to opaque leaves for submodules that cannot be traced.

A submodule whose ``forward`` fx rejects is first traced again with its input and parameter shapes known
(the example's shapes): code that computes padding from shapes (timm's ``Conv2dSame``) then traces, and the
analysis is for that input shape anyway. If it still fails (data-dependent control flow), it becomes a leaf:
the trace goes on around it and the channel analysis freezes the channels it touches. Only when the model's
own top-level ``forward`` cannot be traced is conversion impossible; that raises a :class:`SlimnasError`
naming the model class.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import SlimnasError

_MAX_FALLBACKS = 64


class _ShapedProxy(fx.Proxy):
    """A proxy whose shape is a plain ``torch.Size``: Python arithmetic on it gives ints, not graph nodes."""

    def __init__(self, node: fx.Node, tracer: fx.Tracer, shape: tuple[int, ...]):
        super().__init__(node, tracer)
        self._known_shape = torch.Size(shape)

    def size(self, dim: Optional[int] = None) -> Any:
        return self._known_shape if dim is None else self._known_shape[dim]

    @property
    def shape(self) -> torch.Size:
        return self._known_shape

    def dim(self) -> int:
        return len(self._known_shape)

    @property
    def ndim(self) -> int:
        return len(self._known_shape)


class _LeafFallbackTracer(fx.Tracer):
    """An fx tracer that remembers the innermost module whose tracing failed.

    Modules in ``shaped`` (qualified name -> the shapes of their tensor arguments) see their inputs and their
    own parameters as :class:`_ShapedProxy`.
    """

    def __init__(self, extra_leaves: set[str], shaped: Optional[dict[str, tuple]] = None):
        super().__init__()
        self.extra_leaves = extra_leaves
        self.shaped = shaped or {}
        self.failed_at: Optional[str] = None
        self._shaped_depth = 0

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self.extra_leaves or super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        path = self.path_of_module(m)
        shapes = self.shaped.get(path)
        if shapes is not None:
            args = tuple(_ShapedProxy(a.node, self, s) if isinstance(a, fx.Proxy) and s is not None else a
                         for a, s in zip(args, shapes)) + tuple(args[len(shapes):])
            self._shaped_depth += 1
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_at is None:
                self.failed_at = path
            raise
        finally:
            if shapes is not None:
                self._shaped_depth -= 1

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        out = super().getattr(attr, attr_val, parameter_proxy_cache)
        if self._shaped_depth and isinstance(out, fx.Proxy) and isinstance(attr_val, torch.Tensor):
            return _ShapedProxy(out.node, self, tuple(attr_val.shape))
        return out


def _argument_shapes(model: nn.Module, example: torch.Tensor) -> dict[str, Optional[tuple]]:
    """The shapes of every submodule's tensor arguments on ``example`` (None where calls disagree)."""
    seen: dict[str, Optional[tuple]] = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(module: nn.Module, args: tuple) -> None:
        shapes = tuple(tuple(a.shape) if isinstance(a, torch.Tensor) else None for a in args)
        name = names.get(module)
        if name is not None:
            seen[name] = shapes if seen.get(name, shapes) == shapes else None

    handles = [m.register_forward_pre_hook(hook) for m in names]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    except Exception:  # the shape error itself is reported by the shape propagation below
        pass
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return seen


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def _trace_with_fallbacks(model: nn.Module, example: torch.Tensor, leaves: set[str], shaped: dict[str, tuple],
                          notes: list[str]) -> fx.Graph:
    arg_shapes: Optional[dict[str, Optional[tuple]]] = None
    graph = None
    for _ in range(2 * _MAX_FALLBACKS):
        tracer = _LeafFallbackTracer(leaves, shaped)
        try:
            graph = tracer.trace(model)
            break
        except Exception as exc:  # fx raises many types: any of them means "not traceable here"
            where = tracer.failed_at
            if where and where not in leaves and where not in shaped:
                if arg_shapes is None:
                    arg_shapes = _argument_shapes(model, example)
                if arg_shapes.get(where) is not None:  # try again with its shapes known
                    shaped[where] = arg_shapes[where]
                    continue
            if not where or where in leaves:
                raise SlimnasError(
                    f"cannot trace {type(model).__name__}.forward with torch.fx ({_first_line(exc)}); "
                    "make its control flow independent of tensor values, or pass a model whose top-level "
                    "forward is traceable"
                ) from None
            leaves.add(where)
            shaped.pop(where, None)
            kind = type(model.get_submodule(where)).__name__
            notes.append(f"{where} ({kind}): not traceable ({_first_line(exc)}); kept as a whole, its channels frozen")
    if graph is None:
        raise SlimnasError(f"cannot trace {type(model).__name__}: more than {_MAX_FALLBACKS} untraceable submodules")
    return graph


def trace(model: nn.Module, example: torch.Tensor) -> tuple[fx.GraphModule, list[str]]:
    """Symbolically trace ``model`` and annotate every node with its output shape.

    Returns the graph module (sharing the model's submodules) and one line for each submodule that had to be
    kept opaque. ``example`` is run through the model once, in eval mode and without gradients, so that
    BatchNorm statistics are left untouched.
    """
    leaves: set[str] = set()
    shaped: dict[str, tuple] = {}
    notes: list[str] = []
    was_training = model.training
    model.eval()  # traced as it is analysed and run on the example: batch statistics must not be baked in
    try:
        graph = _trace_with_fallbacks(model, example, leaves, shaped, notes)
    finally:
        model.train(was_training)
    gm = fx.GraphModule(model, graph)
    gm.meta["root"] = model  # the graph module holds bare stand-ins for modules whose attributes it reads
    gm.meta["leaves"], gm.meta["shaped"] = set(leaves), dict(shaped)  # how it was traced (to trace parts again)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example)
    except Exception as exc:
        raise SlimnasError(
            f"{type(model).__name__} fails on an input of shape {tuple(example.shape)} ({_first_line(exc)}); "
            "pass the input shape the model expects (e.g. --input-size 224)"
        ) from None
    finally:
        model.train(was_training)
    return gm, notes
