"""The latency table on disk: ``entries.csv`` (a pandas DataFrame as CSV) plus ``fingerprint.json``.

Rows are appended (and fsync'ed) the moment a measurement finishes, so a killed profiler loses at most the
entry it was timing. ``kind`` is ``unit`` (one unit signature at one (cin, cout) pair), ``baseline`` (an
empty session call, subtracted from every unit), ``probe`` (the reference workload, timed now and then to
follow the machine's speed) or ``model`` (a whole network end to end). ``source`` says whether a unit row
was ``measured`` or ``interpolated``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Mapping, Optional, Union

import pandas as pd

from ..errors import SlimnasError
from ..fileio import append_line, atomic_write_text, read_complete_lines
from .fingerprint import DEVICE_KEYS, MODEL_KEYS, mismatches

COLUMNS = ["kind", "signature", "cin", "cout", "median_ms", "p10_ms", "p90_ms", "n", "inner", "spread_pct",
           "source", "probe_ms", "time"]
ENTRIES = "entries.csv"
FINGERPRINT = "fingerprint.json"
CALIBRATION = "calibration.json"


def _read_rows(path: Path) -> pd.DataFrame:
    """Read entries, leaving out a trailing line without its newline (cut short by a kill, or still being
    appended by a profiler). Only reads: the next :meth:`LatencyTable.append` repairs a torn line."""
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    text = read_complete_lines(path)
    if not text.strip():
        return pd.DataFrame(columns=COLUMNS)
    from io import StringIO

    df = pd.read_csv(StringIO(text), dtype={"signature": str})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise SlimnasError(f"{path} is not a slimnas latency table (missing columns {', '.join(missing)})")
    return df[COLUMNS]


class LatencyTable:
    """A table directory: its fingerprint and rows. Open one with :meth:`create_or_resume` or :meth:`load`."""

    def __init__(self, path: Path, fingerprint: dict, rows: pd.DataFrame):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.rows = rows

    # -- opening ---------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Union[str, Path]) -> "LatencyTable":
        path = Path(path)
        if path.is_file() and path.name in (ENTRIES, FINGERPRINT):
            path = path.parent
        fp_path = path / FINGERPRINT
        if not fp_path.is_file():
            raise SlimnasError(f"{path} is not a latency table directory (no {FINGERPRINT}); build one with `slimnas profile`")
        try:
            fingerprint = json.loads(fp_path.read_text())
        except json.JSONDecodeError as exc:
            raise SlimnasError(f"{fp_path} is not valid JSON ({exc})") from None
        return cls(path, fingerprint, _read_rows(path / ENTRIES))

    @classmethod
    def create_or_resume(cls, path: Union[str, Path], fingerprint: dict) -> "LatencyTable":
        """Open ``path`` to add rows; an existing table must have the same device and model fingerprint."""
        path = Path(path)
        if (path / FINGERPRINT).is_file():
            table = cls.load(path)
            bad = mismatches(fingerprint, table.fingerprint, DEVICE_KEYS + MODEL_KEYS)
            if bad:
                raise SlimnasError(f"{path} holds a table for something else ({'; '.join(bad)}): choose another --out")
            return table
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path / FINGERPRINT, json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")
        return cls(path, dict(fingerprint), _read_rows(path / ENTRIES))

    # -- writing ---------------------------------------------------------------------------------------------
    def append(self, row: Mapping) -> None:
        """Add one row and make it durable before returning (a torn last line left by a kill is cut off first)."""
        row = {c: row.get(c, "") for c in COLUMNS}
        row["time"] = row["time"] or round(time.time(), 3)
        frame = pd.DataFrame([row], columns=COLUMNS)
        append_line(self.path / ENTRIES, frame.to_csv(index=False, header=False, lineterminator="\n"),
                    header=pd.DataFrame(columns=COLUMNS).to_csv(index=False, lineterminator="\n"))
        self.rows = pd.concat([self.rows, frame], ignore_index=True) if len(self.rows) else frame

    def rewrite(self, rows: pd.DataFrame) -> None:
        atomic_write_text(self.path / ENTRIES, rows[COLUMNS].to_csv(index=False, lineterminator="\n"))
        self.rows = rows[COLUMNS].reset_index(drop=True)

    def update_fingerprint(self, **values) -> None:
        self.fingerprint.update(values)
        atomic_write_text(self.path / FINGERPRINT, json.dumps(self.fingerprint, indent=2, sort_keys=True) + "\n")

    # -- reading ---------------------------------------------------------------------------------------------
    def of_kind(self, kind: str) -> pd.DataFrame:
        return self.rows[self.rows["kind"] == kind]

    def units(self, source: Optional[str] = None) -> pd.DataFrame:
        u = self.of_kind("unit")
        return u if source is None else u[u["source"] == source]

    def baseline_ms(self) -> float:
        b = self.of_kind("baseline")
        return float(b["median_ms"].median()) if len(b) else 0.0

    @property
    def probe(self) -> str:
        """The reference probe this table is on (:mod:`.probe`): every later timing must time the same one."""
        from .probe import table_probe

        return table_probe(self.fingerprint)

    def probe_ms(self) -> float:
        """The reference probe's speed when the table was built (median over the build's probes)."""
        p = self.of_kind("probe")
        if not len(p):
            raise SlimnasError(f"{self.path} has no reference-probe rows; profile again")
        return float(p["median_ms"].median())

    def calibration(self) -> Optional[dict]:
        f = self.path / CALIBRATION
        return json.loads(f.read_text()) if f.is_file() else None

    def save_calibration(self, data: dict) -> None:
        atomic_write_text(self.path / CALIBRATION, json.dumps(data, indent=2, sort_keys=True) + "\n")
