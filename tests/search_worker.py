"""A search in a process of its own, for the kill -9 test.

    python -m tests.search_worker STATE [--sleep S] [--kill-mid]

``--kill-mid`` makes the process SIGKILL itself inside an accuracy call once the state file shows a
generation in progress with some of its subnets already scored (a kill at a known, awkward moment).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from slimnas.search import SearchConfig, evolution, evolve, parse_constraint, supernet_costs

from .search_helpers import SmoothAccuracy, tiny_supernet

CONFIG = SearchConfig(population=10, generations=6, seed=5)


def problem():
    """The supernet, its real costs and two budgets relative to the original model."""
    net = tiny_supernet()
    orig = net.space.original()
    constraints = [parse_constraint("flops<=0.6x").resolve(net.flops(orig)),
                   parse_constraint("params<=0.5x").resolve(net.params(orig))]
    return net, supernet_costs(net), constraints


def run(state: Path, accuracy, progress: bool = False):
    net, costs, constraints = problem()
    return evolve(net.space, accuracy, costs, constraints, CONFIG, objective="flops", state_path=state,
                  progress=progress)


def mid_generation(state: Path) -> bool:
    """The saved state has scores from a generation that has not completed."""
    if not state.is_file():
        return False
    data = json.loads(state.read_text())
    return any(row["generation"] > data["generation"] for row in data["cache"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("state", type=Path)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--kill-mid", action="store_true")
    args = ap.parse_args()
    evolution.STATE_SAVE_INTERVAL_S = 0.0  # save after every evaluation, so kills land between saves of the cache
    net, _, _ = problem()
    score = SmoothAccuracy(net.space, args.sleep)

    def accuracy(subnet):
        if args.kill_mid and len(score.calls) >= 2 and mid_generation(args.state):
            os.kill(os.getpid(), signal.SIGKILL)
        return score(subnet)

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # the test reads the resume line
    run(args.state, accuracy)


if __name__ == "__main__":
    main()
