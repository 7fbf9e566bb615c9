"""The fingerprint of a latency table: which machine, runtime and model it was measured for.

Two groups of keys: the *device* keys (CPU/GPU model, cores, OS, backend and version, threads, dtype, batch)
describe the machine a table is used on; the *model* keys (model name, input shape, search-space hash) the
supernet it predicts for. Not every difference is alike (see ``latency_tables/README.md``):

* refused (:data:`EXACT`): what changes which kernels run or what is timed: the CPU or GPU model
  (``device_name``), backend, device, threads, batch, dtype (and an INT8 table's quantizer settings), the
  backend's *major* version, and every model key. :func:`mismatches` lists these; :func:`check` raises naming them.
* warned (:data:`WARN`): what leaves the kernels but may shift the speed: the kernel build (``os``), the
  backend's minor and patch version, the core count, the host CPU of a GPU table. The reference probe timed
  here rescales the predictions to this machine's speed; :func:`check` warns once, naming the keys and the
  short ``slimnas latency validate`` that checks the table here.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import warnings
from typing import Mapping

from ..errors import SlimnasError
from ..machine import cpu_model

DEVICE_KEYS = ("device_name", "cpu_model", "cores", "os", "backend", "backend_version", "device", "threads", "dtype", "batch",
               "quantization")
MODEL_KEYS = ("model", "input_shape", "space_hash")
# quantization: an INT8 table's quantizer settings (slimnas.quantize.SETTINGS); absent from FP32 tables
EXACT = ("device_name", "backend", "device", "threads", "dtype", "batch", "quantization") + MODEL_KEYS
WARN = ("cpu_model", "cores", "os")  # a CPU table's cpu_model is its device_name: that one is refused
VERSION_PARTS_EXACT = {"backend_version": 1}  # leading version parts that must match (1: major); the rest warns


class FingerprintWarning(UserWarning):
    """A table used on a machine/runtime that differs in keys that only warn (see :data:`WARN`)."""


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
    narrow = [g.name for g in supernet.graph.groups if g.narrow]
    if narrow:  # grouped convs that keep their group count time differently at the same widths
        data["narrow_conv_groups"] = narrow
    if supernet.space.stages:  # elastic depth: the table's calibration subnets drop blocks
        data["stages"] = [(st.name, list(st.blocks), list(st.choices)) for st in supernet.space.stages]
    if supernet.space.kernels:  # elastic kernels: a unit per kernel size
        data["kernels"] = [(k.name, k.kernel, list(k.choices)) for k in supernet.space.kernels]
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _version_parts(v, n: int) -> tuple:
    parts = str(v or "").split("+")[0].split(".")
    return tuple(parts[:n])


def _differs(k: str, a, b) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return list(a or []) != list(b or [])
    return a != b


def _describe(k: str, want: Mapping, have: Mapping) -> str:
    return f"{k} is {have.get(k)!r} in the table but {want.get(k)!r} here"


def mismatches(want: Mapping, have: Mapping, keys) -> list[str]:
    """The differences among ``keys`` that forbid using a table measured as ``have`` where ``want`` holds:
    every :data:`EXACT` key, and the leading parts of versioned keys (:data:`VERSION_PARTS_EXACT`). Keys that
    only warn are left out (see :func:`warnings_for`)."""
    out = []
    for k in keys:
        a, b = want.get(k), have.get(k)
        if k in VERSION_PARTS_EXACT:
            n = VERSION_PARTS_EXACT[k]
            if _version_parts(a, n) != _version_parts(b, n):
                out.append(_describe(k, want, have) + f" (the first {n} version part(s) must match)")
        elif k not in WARN and _differs(k, a, b):
            out.append(_describe(k, want, have))
    return out


def warnings_for(want: Mapping, have: Mapping, keys) -> list[str]:
    """The differences among ``keys`` that only warn: :data:`WARN` keys, and versions whose leading parts
    match but whose later parts (minor, patch) differ."""
    out = []
    for k in keys:
        a, b = want.get(k), have.get(k)
        if not (k in WARN or k in VERSION_PARTS_EXACT) or not _differs(k, a, b):
            continue
        n = VERSION_PARTS_EXACT.get(k)
        if n is None or _version_parts(a, n) == _version_parts(b, n):
            out.append(_describe(k, want, have))
    return out


def check(want: Mapping, have: Mapping, keys, what: str) -> list[str]:
    """Refuse a table whose fingerprint ``have`` differs from ``want`` in a key that must match (one line
    naming them); warn (:class:`FingerprintWarning`) when it differs only in keys that may. Returns the
    warned differences."""
    bad = mismatches(want, have, keys)
    if bad:
        raise SlimnasError(f"latency table does not fit this {what}: {'; '.join(bad)} (profile again with `slimnas profile`)")
    soft = warnings_for(want, have, keys)
    if soft:
        warnings.warn(f"latency table measured on a slightly different {what} ({'; '.join(soft)}): its predictions "
                      "are rescaled by the reference probe timed here; check them with "
                      "`slimnas latency validate --table TABLE --samples 20`", FingerprintWarning, stacklevel=2)
    return soft
