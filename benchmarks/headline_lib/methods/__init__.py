"""Ways of slimming the base model to a budget, by name (see :mod:`.base` for the contract)."""
from .base import INT8, METHODS, Budget, Context, Method, Searched, Timers, int8_variant, method, plain_copy
from . import fastnas, slimnas_arms, torch_pruning_global, uniform  # noqa: F401,E402  (register)

PEERS = ("uniform", "torch-pruning", "fastnas")
SLIMNAS_ARMS = ("slimnas-sandwich", "slimnas-cafenet", "slimnas-bsnas")


def get_method(name: str) -> type[Method]:
    """A registered method, or an arm variant ``ARM:KEY=VALUE[:KEY=VALUE]`` (:func:`.slimnas_arms.arm_variant`), either
    with ``+int8`` (:func:`.base.int8_variant`: searched and deployed as INT8)."""
    from slimnas.errors import SlimnasError

    if name.endswith(INT8):
        return int8_variant(get_method(name[: -len(INT8)]), name)
    if name in METHODS:
        return METHODS[name]
    if ":" in name:
        return slimnas_arms.arm_variant(name)
    raise SlimnasError(f"unknown method {name!r}: choose from {', '.join(METHODS)} (or an arm variant such as "
                       "slimnas-bsnas:supernet_teacher=none)")


def is_arm(name: str) -> bool:
    """Is ``name`` a slimnas arm or a variant of one?"""
    return name.partition(":")[0].partition("+")[0] in SLIMNAS_ARMS

__all__ = ["METHODS", "PEERS", "SLIMNAS_ARMS", "get_method", "is_arm", "Budget", "Context", "Method", "Searched", "Timers", "method", "plain_copy"]
