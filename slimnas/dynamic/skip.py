"""A skippable block: a residual module a subnet may drop (see :mod:`slimnas.trace.blocks`).

``SkippableBlock`` stands in the model where the block was, and shares the block's parameters, buffers and
sub-modules (the same dicts), so every name in the model and its ``state_dict`` stays as it was. Its forward runs
the block's own forward, or, when ``skipped``, hands its input back. :func:`slimnas.export_subnet` puts the block
itself back, or ``nn.Identity`` where it is skipped.
"""
from __future__ import annotations

from torch import nn


class SkippableBlock(nn.Module):
    """The block ``block`` (its forward, its tensors, its sub-modules) that can be switched off."""

    def __init__(self, block: nn.Module):
        super().__init__()
        # Not a sub-module (its children are this module's own), and under a name no block's child or attribute has
        # (torchvision's MBConv holds a child called ``block``).
        object.__setattr__(self, "_slimnas_block", block)
        self._parameters, self._buffers, self._modules = block._parameters, block._buffers, block._modules
        self._slimnas_skipped = False

    @property
    def skipped(self) -> bool:
        return self._slimnas_skipped

    @skipped.setter
    def skipped(self, value: bool) -> None:
        self._slimnas_skipped = bool(value)

    def __getattr__(self, name: str):
        try:  # parameters, buffers and sub-modules (shared with the block)
            return super().__getattr__(name)
        except AttributeError:  # the block's other attributes (a forward elsewhere may read them)
            return getattr(self.__dict__["_slimnas_block"], name)

    def forward(self, x, *args, **kwargs):
        if self._slimnas_skipped:
            return x
        block = self._slimnas_block
        block.training = self.training  # train()/eval() reach the shared children, not the block's own flag
        return block(x, *args, **kwargs)

    def export(self) -> nn.Module:
        """The plain module this stands for in a subnet: ``nn.Identity`` when skipped, else the block."""
        if self._slimnas_skipped:
            return nn.Identity()
        self._slimnas_block.training = self.training
        return self._slimnas_block

    def extra_repr(self) -> str:
        return f"{type(self._slimnas_block).__name__}, skipped={self._slimnas_skipped}"
