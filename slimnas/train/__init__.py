"""Supernet training: a :class:`Trainer`, strategies by name, and cost-sensitive bins."""
from .bins import cost_bins, flops_bins, flops_cost, latency_bins, table_latency
from .config import TrainConfig, lr_at
from .strategies import STRATEGIES, StepContext, Strategy, make_strategy, strategy
from .trainer import Trainer

__all__ = ["STRATEGIES", "StepContext", "Strategy", "TrainConfig", "Trainer", "cost_bins", "flops_bins", "flops_cost",
           "latency_bins", "lr_at", "make_strategy", "strategy", "table_latency"]
