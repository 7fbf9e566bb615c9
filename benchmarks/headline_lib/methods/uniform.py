"""``uniform``: one width ratio in every layer, importance-ordered channels kept (slimnas's own conversion)."""
from __future__ import annotations

from torch import nn

from slimnas.export import export_subnet
from slimnas.supernet import convert

from .base import Method, method

FINE_RATIOS = tuple(i / 64 for i in range(4, 65))  # with divisor 8 every multiple of 8 is a candidate


@method
class Uniform(Method):
    name = "uniform"
    knob_name = "width ratio"
    lo, hi = 0.1, 1.0

    def prepare(self) -> dict:
        self.net = convert(self.fresh_base(), self.ctx.input_shape, ratios=FINE_RATIOS, divisor=8)
        return {"groups": len(self.net.space), "divisor": 8}

    def build(self, knob: float) -> nn.Module:
        return export_subnet(self.net, self.net.space.uniform(knob)).eval()
