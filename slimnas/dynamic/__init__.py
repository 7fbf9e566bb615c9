"""Dynamic layers: torch layers whose channels can be sliced at run time (see :mod:`.base`)."""
from .base import DYNAMIC, Active, DynamicMixin, register, take
from .conv import DynamicConv2d
from .functional import FunctionalLayer
from .linear import DynamicLinear
from .norm import DynamicBatchNorm1d, DynamicBatchNorm2d

__all__ = [
    "DYNAMIC", "Active", "DynamicMixin", "register", "take",
    "DynamicConv2d", "DynamicLinear", "FunctionalLayer", "DynamicBatchNorm1d", "DynamicBatchNorm2d",
]
