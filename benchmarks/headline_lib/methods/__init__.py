"""Ways of slimming the base model to a budget, by name (see :mod:`.base` for the contract)."""
from .base import METHODS, Budget, Context, Method, Searched, Timers, method, plain_copy
from . import fastnas, slimnas_arms, torch_pruning_global, uniform  # noqa: F401,E402  (register)

PEERS = ("uniform", "torch-pruning", "fastnas")
SLIMNAS_ARMS = ("slimnas-sandwich", "slimnas-cafenet", "slimnas-bsnas")

__all__ = ["METHODS", "PEERS", "SLIMNAS_ARMS", "Budget", "Context", "Method", "Searched", "Timers", "method", "plain_copy"]
