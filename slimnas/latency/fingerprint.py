"""The fingerprint of a latency table: which machine, runtime and model it was measured for.

Two groups of keys: the *device* keys (CPU/GPU model, cores, OS, backend and version, threads, dtype, batch)
must match the machine a table is used on; the *model* keys (model name, input shape, search-space hash)
must match the supernet it predicts for. A mismatch is refused, naming the keys that differ.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from typing import Mapping

from ..errors import SlimnasError
from ..machine import cpu_model

DEVICE_KEYS = ("device_name", "cpu_model", "cores", "os", "backend", "backend_version", "device", "threads", "dtype", "batch")
MODEL_KEYS = ("model", "input_shape", "space_hash")


def machine() -> dict:
    return {"cpu_model": cpu_model(), "cores": os.cpu_count(), "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version()}


def space_hash(supernet) -> str:
    """Digest of what the table depends on: the groups, their candidate widths and the input shape."""
    data = {
        "groups": [(g.name, g.width, list(supernet.space[g.name].choices) if g.name in supernet.space else [g.width])
                   for g in supernet.graph.groups],
        "input_shape": list(supernet.input_shape),
    }
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def mismatches(want: Mapping, have: Mapping, keys) -> list[str]:
    out = []
    for k in keys:
        a, b = want.get(k), have.get(k)
        if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
            a, b = list(a or []), list(b or [])
        if a != b:
            out.append(f"{k} is {b!r} in the table but {a!r} here")
    return out


def check(want: Mapping, have: Mapping, keys, what: str) -> None:
    bad = mismatches(want, have, keys)
    if bad:
        raise SlimnasError(f"latency table does not fit this {what}: {'; '.join(bad)} (profile again with `slimnas profile`)")
