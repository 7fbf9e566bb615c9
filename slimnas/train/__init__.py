"""Supernet training: a :class:`Trainer`, strategies by name, and cost-sensitive bins."""
from .bins import bin_table, cost_bins, flops_bins, flops_cost, latency_bins, predictor_cost, table_latency
from .config import TrainConfig, lr_at
from .layout import BinLayout, make_layout
from .strategies import STRATEGIES, StepContext, Strategy, make_strategy, strategy
from .trainer import Trainer

__all__ = ["BinLayout", "STRATEGIES", "StepContext", "Strategy", "TrainConfig", "Trainer", "bin_table", "cost_bins",
           "flops_bins", "flops_cost", "latency_bins", "lr_at", "make_layout", "make_strategy", "predictor_cost",
           "strategy", "table_latency"]
