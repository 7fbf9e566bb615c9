"""The resumable state of a search, saved as one JSON file written atomically.

It holds the settings (config, constraints, objective, a hash of the space), the number of completed
generations, the population after the last one (hashes), the random generator's state at that moment, and
the accuracy cache in evaluation order. The cache is saved more often than the rest: after a kill, the
interrupted generation is replayed from the saved generator state, and the subnets it had already scored
come from the cache, so the rerun ends exactly where an uninterrupted run would.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import SlimnasError
from ..fileio import atomic_write_text
from ..subnet import Subnet

FORMAT = 1


def space_digest(space) -> str:
    """Digest of the space's groups and candidate widths (and its stages' depths, where it has any)."""
    data: list = [(g.name, g.width, list(g.choices)) for g in space.groups]
    if space.stages:  # width-only spaces keep the digest they always had
        data.append([(st.name, list(st.blocks), list(st.choices)) for st in space.stages])
    if space.kernels:
        data.append([(k.name, k.kernel, list(k.choices)) for k in space.kernels])
    return hashlib.sha1(json.dumps(data).encode()).hexdigest()[:16]


def rng_to_json(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_json(data: list) -> random.Random:
    rng = random.Random()
    rng.setstate((data[0], tuple(data[1]), data[2]))
    return rng


@dataclass
class Evaluated:
    """One scored subnet: when it was first scored and its accuracy."""

    subnet: Subnet
    generation: int
    accuracy: float


@dataclass
class SearchState:
    settings: dict
    generation: int = -1  # generations completed; -1: the initial population is not complete yet
    population: list[str] = field(default_factory=list)  # hashes of the survivors of ``generation``
    rng: Optional[list] = None  # the generator's state when ``generation`` completed (JSON form)
    cache: dict[str, Evaluated] = field(default_factory=dict)  # hash -> evaluation, in evaluation order
    stopped: Optional[str] = None  # set when the search is finished ("generations" | "max_evaluations")
    wall_s: float = 0.0  # wall time spent by all invocations so far
    probes: dict[str, float] = field(default_factory=dict)  # hash -> accuracy of the sensitivity probes (not candidates)

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "format": FORMAT, "settings": self.settings, "generation": self.generation,
            "population": self.population, "rng": self.rng, "stopped": self.stopped, "wall_s": self.wall_s,
            "evaluations": len(self.cache),
            "cache": [{"hash": h, "generation": e.generation, "accuracy": e.accuracy, "subnet": e.subnet.to_dict()}
                      for h, e in self.cache.items()],
            "probes": self.probes,
        }
        return json.dumps(data, separators=(",", ":"))

    def save(self, path: Path) -> None:
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> "SearchState":
        try:
            data = json.loads(Path(path).read_text())
            cache = {}
            for row in data["cache"]:
                sub = Subnet.from_dict(row["subnet"])
                if sub.hash != row["hash"]:
                    raise ValueError(f"hash {row['hash']} does not match its subnet")
                cache[row["hash"]] = Evaluated(sub, int(row["generation"]), float(row["accuracy"]))
            state = cls(data["settings"], int(data["generation"]), list(data["population"]), data["rng"], cache,
                        data.get("stopped"), float(data.get("wall_s", 0.0)),
                        {str(h): float(a) for h, a in data.get("probes", {}).items()})
            if data.get("format") != FORMAT or any(h not in cache for h in state.population):
                raise ValueError("unknown format or population outside the cache")
        except (OSError, ValueError, KeyError, TypeError, IndexError, SlimnasError) as exc:
            raise SlimnasError(f"{path} is not a readable search state ({exc}); delete it or choose another run folder") from None
        return state

    def check_settings(self, settings: dict, path: Path) -> None:
        """Refuse to resume a search that was started with other settings."""
        diff = settings_diff(self.settings, settings)
        if diff:
            raise SlimnasError(f"{path} holds a search with other settings ({'; '.join(diff)}); "
                               "delete it or choose another run folder")


def settings_diff(saved: dict, current: dict) -> list[str]:
    """One phrase per setting that differs, e.g. ``population 50 there, 40 here``."""
    saved, current = json.loads(json.dumps(saved)), json.loads(json.dumps(current))
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{d}" for d in settings_diff(a, b)]
        elif a != b:
            out.append(f"{key} {_short(a)} there, {_short(b)} here")
    return out


def _short(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict) and "metric" in value[0]:
        return ",".join(f"{c['metric']}<={c['limit']:g}{'x' if c.get('relative') else ''}" for c in value) or "none"
    if value == []:
        return "none"
    return json.dumps(value)
