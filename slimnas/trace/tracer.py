"""Trace a model with torch.fx, falling back to opaque leaves for submodules that cannot be traced.

A submodule whose ``forward`` has data-dependent control flow (or anything else fx rejects) becomes a leaf:
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


class _LeafFallbackTracer(fx.Tracer):
    """An fx tracer that remembers the innermost module whose tracing failed."""

    def __init__(self, extra_leaves: set[str]):
        super().__init__()
        self.extra_leaves = extra_leaves
        self.failed_at: Optional[str] = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self.extra_leaves or super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_at is None:
                self.failed_at = self.path_of_module(m)
            raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def trace(model: nn.Module, example: torch.Tensor) -> tuple[fx.GraphModule, list[str]]:
    """Symbolically trace ``model`` and annotate every node with its output shape.

    Returns the graph module (sharing the model's submodules) and one line for each submodule that had to be
    kept opaque. ``example`` is run through the model once, in eval mode and without gradients, so that
    BatchNorm statistics are left untouched.
    """
    leaves: set[str] = set()
    notes: list[str] = []
    graph = None
    for _ in range(_MAX_FALLBACKS):
        tracer = _LeafFallbackTracer(leaves)
        try:
            graph = tracer.trace(model)
            break
        except Exception as exc:  # fx raises many types: any of them means "not traceable here"
            where = tracer.failed_at
            if not where or where in leaves:
                raise SlimnasError(
                    f"cannot trace {type(model).__name__}.forward with torch.fx ({_first_line(exc)}); "
                    "make its control flow independent of tensor values, or pass a model whose top-level "
                    "forward is traceable"
                ) from None
            leaves.add(where)
            kind = type(model.get_submodule(where)).__name__
            notes.append(f"{where} ({kind}): not traceable ({_first_line(exc)}); kept as a whole, its channels frozen")
    if graph is None:
        raise SlimnasError(f"cannot trace {type(model).__name__}: more than {_MAX_FALLBACKS} untraceable submodules")
    gm = fx.GraphModule(model, graph)
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
