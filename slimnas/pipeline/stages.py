"""Stages of a run, timed: ``stages.json`` in the run folder holds each stage's wall time and whether the
latest invocation found it finished (a resumed run skips those by their output files)."""
from __future__ import annotations

import logging
import contextlib
import json
import time
from pathlib import Path
from typing import Iterator

from ..fileio import atomic_write_text

logger = logging.getLogger(__name__)

FILE = "stages.json"


class StageClock:
    def __init__(self, out: Path):
        self.path = Path(out) / FILE
        self.times: dict[str, dict] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    @contextlib.contextmanager
    def stage(self, name: str, done: bool, what: str = "") -> Iterator[None]:
        """Time the block; ``done``: its outputs exist, the block only loads them."""
        head = f"[{name}] {what}" if what else f"[{name}]"
        logger.info(f"{head}: finished before, skipped" if done else head)
        t0 = time.time()
        yield
        wall = round(time.time() - t0, 1)
        entry = self.times.get(name, {})
        if done and "wall_s" in entry:
            entry["reused"] = True
        else:
            entry = {"wall_s": wall, "reused": False}
        self.times[name] = entry
        atomic_write_text(self.path, json.dumps(self.times, indent=1))

    def record(self, name: str, wall_s: float) -> None:
        """A stage that runs on every invocation (the checks): its latest wall time."""
        self.times = {name: {"wall_s": round(wall_s, 1), "reused": False}, **{k: v for k, v in self.times.items() if k != name}}
        atomic_write_text(self.path, json.dumps(self.times, indent=1))

    def wall(self, name: str) -> float:
        return float(self.times.get(name, {}).get("wall_s", 0.0))
