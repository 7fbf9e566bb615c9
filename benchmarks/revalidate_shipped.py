"""Can a shipped table be used on this machine? Runs the issue-12 check verbatim and records what it says.

    flock /tmp/slimnas-cpu.lock python benchmarks/revalidate_shipped.py --out benchmarks/results/revalidate_shipped

1. ``slimnas latency validate --table latency_tables/mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32 --samples 20
   --out SCRATCH``, as a user runs it: its exit code, its output, its wall time.
2. Where the table is refused, a *diagnostic* run (``--diagnose``, the default): the same 20 subnets timed and
   predicted with the device check switched off, to show how far the table carries to this machine. This is
   not a way to use a table; the product refuses it, as in 1.

Writes ``README.md``, ``device.json`` (this machine's fingerprint and the table's) and, for runs that time,
``validate.json``/``validate.csv``/``validate.png``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = "latency_tables/mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/revalidate_shipped")
    ap.add_argument("--table", default=TABLE)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--no-diagnose", dest="diagnose", action="store_false")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from slimnas.latency import BackendConfig, LatencyTable, create_backend
    from slimnas.latency.fingerprint import DEVICE_KEYS, mismatches, warnings_for
    from slimnas.latency.validate import device_of

    table = LatencyTable.load(ROOT / args.table)
    fp = table.fingerprint
    backend = create_backend(fp["backend"], BackendConfig(fp.get("device", "cpu"), int(fp["threads"]), int(fp["batch"])))
    here = device_of(backend)
    (out / "device.json").write_text(json.dumps({"here": here, "table": {k: fp.get(k) for k in DEVICE_KEYS}}, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="slimnas-revalidate-") as scratch:
        cmd = ["slimnas", "latency", "validate", "--table", args.table, "--samples", str(args.samples), "--out", scratch]
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.time() - t0
        for name in ("validate.json", "validate.csv", "validate.png"):
            if (Path(scratch) / name).is_file():
                shutil.copy(Path(scratch) / name, out / name)
    lines = [f"# `slimnas latency validate` on the shipped {Path(args.table).name}", "",
             f"Command (run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, from the repository root):", "",
             f"    {' '.join(cmd[:-1])} SCRATCH", "",
             f"Exit code {proc.returncode}, wall time {wall:.1f} s. Its output:", "", "```",
             *(proc.stdout + proc.stderr).strip().splitlines()[-6:], "```", "",
             f"Refusing keys: {mismatches(here, fp, DEVICE_KEYS) or 'none'}; warn-only differences: "
             f"{warnings_for(here, fp, DEVICE_KEYS) or 'none'} (policy: `latency_tables/README.md`). "
             "This machine and the table: `device.json`.", ""]
    if proc.returncode == 0:
        m = json.loads((out / "validate.json").read_text())["metrics"]
        lines += [f"Result: {100 * m['within_10pct']:.1f}% within ±10%, RMSPE {m['rmspe_pct']:.2f}%, "
                  f"Kendall τ {m['kendall_tau']:.3f} over {m['n']} subnets.", ""]
    elif args.diagnose:
        lines += diagnose(table, args.samples, out)
    (out / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def diagnose(table, samples: int, out: Path) -> list[str]:
    """The same validation with the device check off: how wrong the table is here (a diagnostic only)."""
    import slimnas.latency.validate as v
    from slimnas.tables import supernet_for

    table_device = {k: table.fingerprint.get(k) for k in ("device_name", "cpu_model", "backend_version")}
    real = v.device_of
    v.device_of = lambda backend: {**real(backend), **table_device}  # pretend to be the table's machine
    t0 = time.time()
    diag = out / "diagnostic_device_check_off"
    result = v.validate(table.path, supernet_for(table), samples=samples, out=diag)
    for f in (diag / "work").glob("*"):
        f.unlink() if f.is_file() else shutil.rmtree(f)
    (diag / "work").rmdir()
    m, mo = result["metrics"], result["metrics_without_probe_rescale"]
    return ["Diagnostic (not a product path: the device check switched off in-process, "
            "`diagnostic_device_check_off/`): the same subnets timed here and predicted by the table, "
            f"in {time.time() - t0:.0f} s:", "",
            f"- with the reference probe's rescale: {100 * m['within_10pct']:.1f}% within ±10%, RMSPE "
            f"{m['rmspe_pct']:.2f}%, mean error {m['mean_error_pct']:+.2f}%, Kendall τ {m['kendall_tau']:.3f} "
            f"(speed factor probe here / probe in the table {result['speed_factors'][0]:.3f});",
            f"- without it: {100 * mo['within_10pct']:.1f}% within ±10%, RMSPE {mo['rmspe_pct']:.2f}%, "
            f"mean error {mo['mean_error_pct']:+.2f}%;",
            f"- the measurement's own repeat error: {result['repeat_error_pct'][result['statistic']]:.2f}%.", ""]


if __name__ == "__main__":
    sys.exit(main())
