"""``plain``: ordinary training of one network (a base checkpoint, or a stand-alone fine-tune of a subnet)."""
from __future__ import annotations

from .base import StepContext, Strategy
from .registry import strategy


@strategy("plain")
class Plain(Strategy):
    needs_supernet = False

    def step(self, x, y, ctx: StepContext) -> dict[str, float]:
        with ctx.autocast():
            loss = ctx.ce(ctx.forward(x), y)
        ctx.backward(loss)
        return {"loss": float(loss.detach())}

    def report_subnets(self):
        return {"model": None}
