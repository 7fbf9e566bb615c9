"""A subnet is data: the width of every searchable channel group, plus (optionally) which channels and depths.

Widths alone mean "the first c channels in importance order". Where CafeNet's locally free sharing chose
them, ``indices`` names the exact stored channels of a group. In a space with elastic depth, ``depth`` says how
many skippable blocks of each stage are kept (the first ones); with elastic kernels, ``kernels`` names the kernel
size of each such conv. A subnet serialises to JSON and has a stable hash, so search results, caches and exports can
refer to it; a subnet without depth or kernels hashes as it always did.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Optional

from .errors import SlimnasError


class Subnet:
    """Immutable ``{group: width}`` plus optional ``{group: channel indices}`` and ``{stage: blocks kept}``."""

    __slots__ = ("_widths", "_indices", "_depth", "_kernels", "_key")

    def __init__(self, widths: Mapping[str, int], indices: Optional[Mapping[str, Any]] = None,
                 depth: Optional[Mapping[str, int]] = None, kernels: Optional[Mapping[str, int]] = None):
        self._widths = {str(k): int(v) for k, v in widths.items()}
        self._depth = {str(k): int(v) for k, v in (depth or {}).items()}
        if any(v < 0 for v in self._depth.values()):
            raise SlimnasError("subnet depths count the blocks a stage keeps: give non-negative integers")
        self._kernels = {str(k): int(v) for k, v in (kernels or {}).items()}
        if any(v < 1 or v % 2 == 0 for v in self._kernels.values()):
            raise SlimnasError("subnet kernel sizes must be odd positive integers (3, 5, 7)")
        self._indices = {str(k): tuple(int(i) for i in v) for k, v in (indices or {}).items()}
        for name, idx in self._indices.items():
            if name not in self._widths or len(idx) != self._widths[name]:
                raise SlimnasError(
                    f"subnet indices for group {name!r} list {len(idx)} channels but its width is "
                    f"{self._widths.get(name)}: give exactly one index per channel"
                )
            if len(set(idx)) != len(idx) or min(idx, default=0) < 0:
                raise SlimnasError(f"subnet indices for group {name!r} must be distinct non-negative integers")
        self._key = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def widths(self) -> dict[str, int]:
        return dict(self._widths)

    @property
    def indices(self) -> dict[str, tuple[int, ...]]:
        return dict(self._indices)

    @property
    def depth(self) -> dict[str, int]:
        """Blocks kept per stage (empty in a width-only space)."""
        return dict(self._depth)

    @property
    def kernels(self) -> dict[str, int]:
        """Kernel size per elastic conv (empty without elastic kernels)."""
        return dict(self._kernels)

    def __getitem__(self, group: str) -> int:
        return self._widths[group]

    def __iter__(self):
        return iter(self._widths)

    def __len__(self) -> int:
        return len(self._widths)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"widths": dict(self._widths)}
        if self._indices:
            out["indices"] = {k: list(v) for k, v in self._indices.items()}
        if self._depth:
            out["depth"] = dict(self._depth)
        if self._kernels:
            out["kernels"] = dict(self._kernels)
        return out

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Subnet":
        if not isinstance(data, Mapping) or not isinstance(data.get("widths"), Mapping):
            raise SlimnasError('a subnet must be a JSON object with a "widths" mapping of group name to width')
        if data.get("depth") is not None and not isinstance(data["depth"], Mapping):
            raise SlimnasError('a subnet\'s "depth" must map each stage name to the number of blocks it keeps')
        if data.get("kernels") is not None and not isinstance(data["kernels"], Mapping):
            raise SlimnasError('a subnet\'s "kernels" must map each elastic conv\'s name to its kernel size')
        return cls(data["widths"], data.get("indices"), data.get("depth"), data.get("kernels"))

    @classmethod
    def from_json(cls, text: str) -> "Subnet":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SlimnasError(f"subnet JSON is not valid JSON ({exc})") from None
        return cls.from_dict(data)

    def replace(self, widths: Optional[Mapping[str, int]] = None, indices: Optional[Mapping[str, Any]] = None,
                depth: Optional[Mapping[str, int]] = None, kernels: Optional[Mapping[str, int]] = None) -> "Subnet":
        """A copy with some widths (indices, depths, kernels) changed; indices of a group whose width changes are
        dropped."""
        new_w = dict(self._widths)
        new_i = dict(self._indices)
        for k, v in (widths or {}).items():
            if new_w.get(k) != v:
                new_i.pop(k, None)
            new_w[k] = int(v)
        new_i.update(indices or {})
        return Subnet(new_w, new_i, {**self._depth, **(depth or {})}, {**self._kernels, **(kernels or {})})

    def without_indices(self) -> "Subnet":
        """The same widths, depths and kernels, each group's channels the first ones in importance order."""
        return Subnet(self._widths, None, self._depth, self._kernels)

    @property
    def hash(self) -> str:
        """A stable 16-hex-digit digest of the subnet (same on every machine and Python version)."""
        return hashlib.sha1(self._key.encode()).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Subnet) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        extra = f", {len(self._indices)} with indices" if self._indices else ""
        extra += f", depth {sum(self._depth.values())}" if self._depth else ""
        extra += f", {len(self._kernels)} kernels" if self._kernels else ""
        return f"Subnet({len(self._widths)} groups, hash={self.hash}{extra})"
