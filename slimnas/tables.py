"""Latency tables seen from above the latency layer: where shipped tables are, and the network a table is for.

The shipped tables live in the source tree's ``latency_tables/`` and travel in the wheel as data files
(``<prefix>/share/slimnas/latency_tables``, declared in ``pyproject.toml``), so an installed slimnas finds them
without a checkout. Rebuilding a table's supernet means loading a model (and its checkpoint): that is done
here, by the CLI and the pipeline, and the latency layer is handed the supernet.
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Optional

from .errors import SlimnasError

SHIPPED = "latency_tables"
_DATA_PREFIX = f"share/slimnas/{SHIPPED}/"  # where the wheel installs them, under the installation prefix
_SOURCE = Path(__file__).resolve().parents[1] / SHIPPED  # a checkout (or an editable install)


def installed_tables_dir() -> Optional[Path]:
    """The shipped tables of an installed wheel (found through its RECORD, whatever the install scheme)."""
    try:
        files = metadata.distribution("slimnas").files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        p = str(f).replace("\\", "/")
        i = p.find(_DATA_PREFIX)
        if i >= 0 and p.endswith("/fingerprint.json"):
            folder = Path(str(metadata.distribution("slimnas").locate_file(f))).resolve().parents[1]
            if folder.is_dir():
                return folder
    return None


def shipped_tables_dir() -> Optional[Path]:
    """The folder of the tables shipped with slimnas: the checkout's, else the installed wheel's."""
    return _SOURCE if _SOURCE.is_dir() else installed_tables_dir()


def table_dirs() -> list[Path]:
    """Where tables are looked for: ./latency_tables (``slimnas profile``'s default), then the shipped ones."""
    out: list[Path] = []
    for d in (Path.cwd() / SHIPPED, shipped_tables_dir()):
        if d is not None and d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def supernet_for(table):
    """Rebuild the supernet a table (a :class:`~slimnas.latency.LatencyTable`) was made for, from its
    fingerprint's ``model_args`` (model, classes, weights, space settings) and input shape."""
    from .models import load_model
    from .space import SpaceConfig
    from .supernet import ConvertConfig, convert

    args = table.fingerprint.get("model_args") or {}
    if not args.get("model"):
        raise SlimnasError(f"{table.path}'s fingerprint does not record how to build its model (model_args)")
    model = load_model(args["model"], num_classes=args.get("num_classes"), weights=args.get("weights"))
    space = SpaceConfig(ratios=tuple(args.get("ratios", SpaceConfig().ratios)), divisor=args.get("divisor", 8),
                        max_ratio=args.get("max_ratio", 1.0), conv_groups=args.get("conv_groups", "whole"),
                        depth=bool(args.get("depth", False)), kernel_sizes=tuple(args.get("kernel_sizes") or ()))
    return convert(model, tuple(table.fingerprint["input_shape"]), ConvertConfig(space=space))


def resolve_table(spec) -> Path:
    """A table folder as given, or, where no such folder exists here, the shipped (or ./latency_tables) table
    of that name: ``latency_tables/mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32`` works from any folder."""
    path = Path(spec)
    if path.exists():
        return path
    for d in table_dirs():
        if (d / path.name / "fingerprint.json").is_file():
            return d / path.name
    return path  # missing: the table loader says so
