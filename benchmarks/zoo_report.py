"""Issue 14's zoo benchmark: every CNN converts, exports and keeps its numbers; peers measured alongside.

For each model: channel groups (searchable / frozen by the tracer), min/original FLOPs (``net.space.min()``
over ``net.space.original()``: 1.0 means nothing is searchable; target <= 0.20), conversion time, and over N
random subnets the largest |supernet - exported| and |exported - onnxruntime| output differences (every output
of a model returning a dict, as the segmentation models do) and the largest relative gap between analytic
FLOPs/params and thop on the exported model; plus full width vs the original, in fp32 and in fp64. On the same
model instance and input, the peers' smallest models, as a fraction of the original's FLOPs counted by thop:
- Torch-Pruning: ``MetaPruner(importance=MagnitudeImportance(p=2), pruning_ratio=0.75)``, uniform per layer
  (not global), layers producing the classes ignored (the issue's "uniform 75% pruning");
- FastNAS (nvidia-modelopt): ``mtn.convert(model, mode="fastnas")`` with modelopt's default rules (ratios 0.05
  to 1, channel divisor 32), ``mtn.sample(model, sample_func=min)``, ``mtn.export``.
Each model runs in a child process (its own memory, a hard timeout); each peer under its own alarm, so a model or
peer that fails is a row saying why, never the end of the run. Rows are written after every model.
Models: ``timm:<name>`` from timm, the torchvision names, ``tinynet`` (the tests' CNN); never any weights.
A rerun into the same --out with the same settings resumes: it keeps the rows it finds (each with the machine
it was measured on) and runs the models missing or failed (--fresh: all again).

    python benchmarks/zoo_report.py                   # the whole zoo (issue 14), 64 px or a model's MIN_SIZE
    python benchmarks/zoo_report.py --quick           # six models, 2 subnets: a smoke test of the script
    python benchmarks/zoo_report.py --models resnet18 timm:efficientnet_b0 --subnets 3 --peers none
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import thop
import torch
import torchvision

import slimnas
from slimnas.cost import thop_custom_ops
from slimnas.export import max_output_diff, named_outputs, onnx_max_abs_diff
from slimnas.fileio import atomic_write_text
from slimnas.machine import fingerprint
from slimnas.space import SpaceConfig
from slimnas.supernet import ConvertConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import calibrate  # a test helper: realistic BatchNorm statistics
from tests.nets import TinyNet

CLASSES = 10
TRANSFORMERS = ("vit_", "swin_", "maxvit_")  # not CNNs: outside issue 14's scope, listed as skipped
TORCHVISION = [n for n in torchvision.models.list_models(module=torchvision.models) if not n.startswith(TRANSFORMERS)]
SKIPPED = [n for n in torchvision.models.list_models(module=torchvision.models) if n.startswith(TRANSFORMERS)]
TIMM = ["efficientnet_b0", "tf_efficientnet_b0", "mobilenetv2_100", "mobilenetv3_large_100", "mnasnet_100", "lcnet_050",
        "mixnet_s", "ghostnet_100", "rexnet_100", "cspresnet50", "repvgg_a0"]
SEGMENTATION = ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"]
ZOO = TORCHVISION + [f"timm:{n}" for n in TIMM] + SEGMENTATION + ["tinynet"]
QUICK = ["mobilenet_v2", "resnet18", "regnet_y_400mf", "timm:mobilenetv2_100", "lraspp_mobilenet_v3_large", "tinynet"]
# inception_v3's stem and reductions need 75 px; alexnet's and vgg's adaptive pooling to 6x6 / 7x7 exports to ONNX
# (TorchScript exporter) only from a map that it divides: their features are 6x6 / 7x7 at 224 px (2x2 at 64).
MIN_SIZE = {"inception_v3": 75, "alexnet": 224, **{n: 224 for n in TORCHVISION if n.startswith("vgg")}}
# Known blockers of models above the target (otherwise the report names the tracer's first note).
BLOCKER = {"tinynet": "a tiny test net (stem and head groups at 16-32 channels)"}
BIG, HUGE = 60e6, 300e6  # params: above BIG at most 2 subnets; above HUGE 1 subnet and no broadened supernet
FP64_MAX = 1e9  # params: the fp64 check converts the model and the supernet in place (16 bytes a parameter)
RESULTS = ROOT / "benchmarks" / "results"
LEGEND = (
    "min/orig: FLOPs of `net.space.min()` / `net.space.original()` (slimnas; grouped convs {grouped}; widths in "
    "multiples of 8; min divisor 1: not rounded; min narrow: with `SpaceConfig(conv_groups=\"narrow\")`, every conv "
    "group of a grouped conv narrows and the group count stays (models with grouped convs; its own parity checks on "
    "one subnet, judged in the checks column); min floor 0.05: the space at FastNAS's smallest width ratio 0.05, not "
    "rounded). torch_pruning: Torch-Pruning MetaPruner, L2 magnitude, uniform 75% "
    "channel pruning; fastnas: modelopt FastNAS's smallest subnet (default rules: ratio 0.05, divisor 32); both thop "
    "MACs over the original's thop MACs, same model and input. Differences are max |a-b| over every output (fp32; "
    "{subnets} seeded random subnets, fewer for big models, see notes); checks, with scale = max(1, max|output| of the "
    "original): exported <= 1e-5 x scale, onnxruntime <= 1e-4 x scale, thop FLOPs/params within 1%, full width and "
    "broadened (1.5x, at init) vs the original <= 1e-9 x scale in fp64 (the importance reorder reassociates fp32 sums, "
    "whose rounding deep nets amplify; fp32 shown; judged at 1e-5 x scale where fp64 is skipped, over 1000M params).\n")


def build(name: str) -> torch.nn.Module:
    if name == "tinynet":
        return TinyNet(CLASSES)
    if name.startswith("timm:"):
        import timm

        return timm.create_model(name[5:], pretrained=False, num_classes=CLASSES)
    kwargs = {"weights": None, "num_classes": CLASSES}
    if name in SEGMENTATION:
        kwargs.update(weights_backbone=None, aux_loss=name.startswith("deeplabv3") or None)
    if name in ("inception_v3", "googlenet"):
        kwargs.update(aux_logits=False, init_weights=True)  # the aux head runs only in training and needs 299 px
    return torchvision.models.get_model(name, **kwargs)


@contextlib.contextmanager
def alarm(seconds: int):
    def fire(*_):
        raise TimeoutError(f"timed out after {seconds} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"fails: {type(exc).__name__}: {text[0][:160] if text else ''}".rstrip(": ")


def macs(model: torch.nn.Module, x: torch.Tensor) -> float:
    model = copy.deepcopy(model)  # thop adds counters to the modules it profiles
    return float(thop.profile(model, inputs=(x,), verbose=False, custom_ops=thop_custom_ops(model))[0])


def heads(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The layers producing the classes: a peer must not prune them (slimnas keeps the model output fixed)."""
    return [m for m in model.modules() if getattr(m, "out_features", getattr(m, "out_channels", None)) == CLASSES]


def torch_pruning(model, x) -> float:
    import torch_pruning as tp

    pruner = tp.pruner.MetaPruner(model, x, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=0.75,
                                  ignored_layers=heads(model))
    pruner.step()
    return macs(model, x)


def fastnas(model, x) -> float:
    import modelopt.torch.nas as mtn
    import modelopt.torch.prune  # noqa: F401  (registers the fastnas mode)

    model = mtn.convert(model, mode="fastnas")
    mtn.sample(model, sample_func=min)
    return macs(mtn.export(model), x)


PEERS = {"torch_pruning": torch_pruning, "fastnas": fastnas}


@contextlib.contextmanager
def guard(row: dict, stage: str):
    """A stage that fails becomes a note of the row (the figures measured before it stay)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001  (reported in the row)
        row["notes"].append(f"{stage} {why(exc)}")


@torch.no_grad()
def subnets_check(net, x: torch.Tensor, size: int, n: int, notes: list[str]) -> dict:
    """Worst differences over ``n`` seeded random subnets: supernet vs export, export vs onnxruntime, thop."""
    worst = {"supernet_vs_export": 0.0, "export_vs_onnx": 0.0, "flops_rel_err": 0.0, "params_rel_err": 0.0}
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            s = net.space.sample(rng)
            net.set_subnet(s)
            plain = slimnas.export_subnet(net, s).eval()
            worst["supernet_vs_export"] = max(worst["supernet_vs_export"], max_output_diff(net(x), plain(x)))
            worst["flops_rel_err"] = max(worst["flops_rel_err"], abs(net.flops(s) / macs(plain, x) - 1))
            params = sum(q.numel() for q in plain.parameters())
            worst["params_rel_err"] = max(worst["params_rel_err"], abs(net.params(s) / params - 1))
            try:
                path = slimnas.export_onnx(plain, Path(tmp) / f"{i}.onnx", (3, size, size), check=False)
                worst["export_vs_onnx"] = max(worst["export_vs_onnx"], onnx_max_abs_diff(plain, path, x))
                Path(path).unlink()
            except Exception as exc:  # noqa: BLE001  (reported: e.g. a graph over protobuf's 2 GB)
                notes.extend([f"onnx {why(exc)}"] if f"onnx {why(exc)}" not in notes else [])
                worst["export_vs_onnx"] = float("nan")
            del plain
    return worst


def report(name: str, size: int, n: int, grouped: bool, peers: list[str], peer_timeout: int) -> dict:
    size = max(size, MIN_SIZE.get(name, 0))
    torch.manual_seed(0)
    model = build(name)
    bns = {m: m.momentum for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    for m in bns:  # running statistics = the calibration batches' (2 steps at 0.1 left inception_v3's logits at 2e6)
        m.momentum = None
    model = calibrate(model, (3, size, size))
    for m, momentum in bns.items():
        m.momentum = momentum
    params = sum(p.numel() for p in model.parameters())
    n = min(n, 1 if params > HUGE else 2 if params > BIG else n)
    row = {"model": name, "size": size, "params_M": round(params / 1e6, 1), "subnets": n, "notes": []}
    if params > BIG:
        row["notes"].append(f"{n} subnet(s): {params / 1e6:.0f}M params")
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        want = model(x)
    row["outputs"] = [k for k, _ in named_outputs(want)]
    row["scale"] = round(max(1.0, max(float(t.abs().max()) for _, t in named_outputs(want))), 2)
    t0 = time.perf_counter()
    config = ConvertConfig(grouped=grouped)
    net = slimnas.convert(model, size, config).eval()
    row.update(convert_s=round(time.perf_counter() - t0, 2), groups=len(net.graph.groups), searchable=len(net.space),
               frozen_by_tracer=len(net.graph.notes), tracer_note=(net.graph.notes or [""])[0][:120],
               min_over_original=round(net.flops(net.space.min()) / net.flops(net.space.original()), 3))
    with torch.no_grad():
        row["full_vs_original"] = max_output_diff(net(x), want)
    with guard(row, "divisor 1"):  # widths not rounded to multiples of 8, as the peers' are not
        exact = slimnas.convert(model, size, ConvertConfig(SpaceConfig(divisor=1), reorder=False, grouped=grouped))
        row["min_divisor_1"] = round(exact.flops(exact.space.min()) / exact.flops(exact.space.original()), 3)
        del exact
    with guard(row, "floor 0.05"):  # FastNAS's smallest width ratio (0.05), not rounded: what slimnas's floor allows
        low = slimnas.convert(model, size, ConvertConfig(SpaceConfig(ratios=(0.05,), divisor=1), reorder=False,
                                                         grouped=grouped))
        row["min_floor_005"] = round(low.flops(low.space.min()) / low.flops(low.space.original()), 3)
        del low
    if grouped and any(g.multiple > 1 for g in net.graph.groups):
        with guard(row, "narrow"):  # conv_groups="narrow": every conv group narrows, the group count stays
            narrow = slimnas.convert(model, size, ConvertConfig(SpaceConfig(conv_groups="narrow"))).eval()
            row["min_narrow"] = round(narrow.flops(narrow.space.min()) / narrow.flops(narrow.space.original()), 3)
            if params <= BIG:
                with torch.no_grad():
                    row["narrow_full_vs_original_fp64"] = max_output_diff(narrow.double()(x.double()),
                                                                          model.double()(x.double()))
                narrow.float(), model.float()
            row.update({f"narrow_{k}": v for k, v in subnets_check(narrow, x, size, 1, row["notes"]).items()})
            del narrow
    if params <= FP64_MAX:
        with guard(row, "fp64"), torch.no_grad():  # fp64: rounding (reassociated sums) out of the way
            want64 = model.double()(x.double())
            row["full_vs_original_fp64"] = max_output_diff(net.double()(x.double()), want64)
            net.float(), model.float()
    if params <= HUGE:
        with guard(row, "broadened"), torch.no_grad():
            wide = slimnas.convert(model, size, config, max_ratio=1.5).eval()
            row["broadened_vs_original"] = max_output_diff(wide(x), want)
            row["broadened_vs_original_fp64"] = max_output_diff(wide.double()(x.double()), want64)
            del wide
    if name in SEGMENTATION:  # the head's input widths follow the backbone's
        with guard(row, "head"):
            head = {"lraspp": "classifier.cbr.0", "deeplabv3": "classifier.0.convs.0.0"}[name.split("_")[0]]
            small = slimnas.export_subnet(net, net.space.min()).get_submodule(head).in_channels
            row["notes"].append(f"{head} in_channels {model.get_submodule(head).in_channels} -> {small} at min")
    with guard(row, "subnets"):
        row.update(subnets_check(net, x, size, n, row["notes"]))
    del net
    base = macs(model, x)
    for peer in peers:
        t0 = time.perf_counter()
        try:
            with alarm(peer_timeout), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row[peer] = round(PEERS[peer](copy.deepcopy(model), x) / base, 3)
        except Exception as exc:  # noqa: BLE001  (a peer that fails is a cell saying why)
            row[peer] = why(exc)
        row[f"{peer}_s"] = round(time.perf_counter() - t0, 1)
    return row


def checks(r: dict) -> str:
    """Pass/fail against the output's scale (max(1, max|output|)). Full width and broadened vs the original are
    judged in fp64: the importance reorder permutes channels, so fp32 sums are reassociated and their rounding, which
    deep nets amplify (inception_v3: 1.4e-3 at logits of 22, 8.8e-12 in fp64), says nothing about the function.
    Where fp64 is skipped (over FP64_MAX params) the fp32 figure is judged at 1e-5."""
    nan, s = float("nan"), r["scale"]
    tol = {"supernet_vs_export": 1e-5 * s, "export_vs_onnx": 1e-4 * s, "flops_rel_err": 0.01, "params_rel_err": 0.01}
    for k in ("full_vs_original", "broadened_vs_original"):
        if f"{k}_fp64" in r or k not in r:
            tol[f"{k}_fp64"] = 1e-9 * s
        else:  # fp64 skipped (a giant): fp32
            tol[k] = 1e-5 * s
    if r["params_M"] * 1e6 > HUGE and "broadened_vs_original" not in r:
        del tol["broadened_vs_original_fp64"]  # not built for giants
    if "min_narrow" in r:  # the conv_groups="narrow" supernet: one subnet, fp64 full width up to BIG params
        tol.update({f"narrow_{k}": t for k, t in tol.items() if k in ("supernet_vs_export", "export_vs_onnx",
                                                                      "flops_rel_err", "params_rel_err")})
        if r["params_M"] * 1e6 <= BIG:
            tol["narrow_full_vs_original_fp64"] = 1e-9 * s
    bad = [k for k, t in tol.items() if not r.get(k, nan) <= t]
    return "ok" if not bad else "FAIL " + ",".join(bad)


def cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.1e}" if v and abs(v) < 0.01 else f"{v:.3g}"
    return str(v)


def settings(args: argparse.Namespace) -> dict:
    """What a row depends on: a rerun with the same settings keeps the rows it finds (see :func:`earlier_rows`)."""
    return {"size": args.size, "subnets": args.subnets, "grouped": bool(args.grouped), "peers": list(args.peers)}


def _settings_of_command(cmd: str) -> dict:
    """The settings of a zoo.json written before it recorded them, read back from its command line."""
    words = cmd.split()

    def after(flag: str, default: str) -> str:
        return words[words.index(flag) + 1] if flag in words else default

    peers = after("--peers", ",".join(PEERS))
    return {"size": int(after("--size", "64")), "subnets": int(after("--subnets", "5")),
            "grouped": "--no-grouped" not in words, "peers": [p for p in peers.split(",") if p and p != "none"]}


def earlier_rows(args: argparse.Namespace, models: list[str]) -> dict[str, dict]:
    """The rows of an earlier run into ``--out`` with the same settings, by model: a run stopped part way (or a
    session's time running out) resumes with the models it has not reached. A row that failed is run again; each
    kept row keeps the machine it was measured on."""
    path = args.out / "zoo.json"
    if args.fresh or not path.is_file():
        return {}
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        print(f"zoo_report: error: {path} is not a zoo report ({exc}): move it away, or pass --fresh", file=sys.stderr)
        sys.exit(2)
    if old.get("settings", _settings_of_command(old.get("command", ""))) != settings(args):
        print(f"{path} was written with other settings: its rows are replaced (--fresh to say so)", file=sys.stderr)
        return {}
    keep = {r["model"]: {**r, "machine": r.get("machine", old.get("machine"))} for r in old.get("rows", [])
            if "error" not in r and r["model"] in models and r["model"] not in (args.redo or [])}
    print(f"resuming {path}: {len(keep)} of {len(models)} models already measured", file=sys.stderr)
    return keep


def write(rows: list[dict], args: argparse.Namespace, models: list[str]) -> None:
    cmd = (f"python benchmarks/zoo_report.py --size {args.size} --subnets {args.subnets} --"
           f"{'' if args.grouped else 'no-'}grouped --peers {','.join(args.peers) or 'none'} "
           f"--models {' '.join(models)}")
    rows = sorted(rows, key=lambda r: models.index(r["model"]))
    not_run = [m for m in models if m not in {r["model"] for r in rows}]
    partial = "" if not not_run else f" (partial: {len(rows)} of {len(models)} models)"
    machines: dict[str, int] = {}
    for r in rows:
        key = json.dumps({k: v for k, v in r["machine"].items() if k != "date"})
        machines[key] = machines.get(key, 0) + 1
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "zoo.json", json.dumps({"command": cmd + partial, "settings": settings(args),
                                                       "machine": fingerprint(), "skipped": SKIPPED,
                                                       "not_run": not_run, "rows": rows}, indent=1))
    done = [r for r in rows if "error" not in r]
    meet = [r for r in done if r["min_over_original"] <= 0.20]
    miss = [f"{r['model']} {r['min_over_original']} ({BLOCKER.get(r['model']) or r['tracer_note'] or '?'})"
            for r in done if r["min_over_original"] > 0.20]
    better = [f"{r['model']} ({p} {r[p]} < {r['min_over_original']}; divisor 1: {r.get('min_divisor_1', '?')}"
              f"{'; narrow: ' + str(r['min_narrow']) if 'min_narrow' in r else ''}; floor 0.05: "
              f"{r.get('min_floor_005', '?')})"
              for r in done for p in args.peers if isinstance(r.get(p), float) and r[p] < r["min_over_original"]]
    unmatched = [f"{r['model']} ({p} {r[p]})" for r in done for p in args.peers if isinstance(r.get(p), float)
                 and r[p] < min(r["min_over_original"], r.get("min_divisor_1", 1), r.get("min_narrow", 1),
                                r.get("min_floor_005", 1)) - 0.005]
    failing = [f"{r['model']} ({checks(r)})" for r in done if checks(r) != "ok"]
    peer_fails = [f"{p} on {', '.join(r['model'] for r in done if isinstance(r.get(p), str))}" for p in args.peers
                  if any(isinstance(r.get(p), str) for r in done)]
    errors = "; errors: " + ", ".join(r["model"] for r in rows if "error" in r) if len(done) < len(rows) else ""
    ran_on = "  \n".join(f"Machine: `{m}` ({n} models)" for m, n in machines.items()) if len(machines) > 1 else \
        f"Machine: `{json.dumps(rows[0]['machine'] if rows else fingerprint())}`"
    lines = [f"# Model zoo report\n\nCommand: `{cmd}`{partial}  \n{ran_on}\n",
             f"**{len(meet)} of {len(done)} models meet min/original FLOPs <= 0.20**{errors}.  ",
             f"Above 0.20 (blocker): {'; '.join(miss) or 'none'}.  ",
             f"A peer goes smaller than the default space (and slimnas's other figures): {'; '.join(better) or 'none'}.  ",
             f"A peer goes smaller than every slimnas figure by more than 0.005: {'; '.join(unmatched) or 'none'}.  ",
             f"Parity or count checks failing: {'; '.join(failing) or 'none'}.  ",
             f"Peers failing: {'; '.join(peer_fails) or 'none'}.  ",
             *([f"Not run yet (rerun the command: it resumes): {', '.join(not_run)}.  "] if not_run else []),
             f"Skipped (transformers, not CNNs): {', '.join(SKIPPED)}.\n",
             LEGEND.format(grouped="on" if args.grouped else "off", subnets=args.subnets)]
    cols = ["model", "size", "params_M", "searchable", "groups", "frozen_by_tracer", "min_over_original",
            "min_divisor_1", "min_narrow", "min_floor_005", *args.peers, "convert_s", "scale", "full_vs_original", "full_vs_original_fp64",
            "broadened_vs_original_fp64", "supernet_vs_export", "export_vs_onnx", "flops_rel_err", "subnets", "checks",
            "notes", *(["cpu"] if len(machines) > 1 else [])]
    lines += ["| " + " | ".join(c.replace("_", " ") for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | " + " | ".join([""] * (len(cols) - 2)) + f" | {r['error']} |")
            continue
        r = dict(r, checks=checks(r), notes="; ".join(r["notes"] + ([r["tracer_note"]] if r["tracer_note"] else [])),
                 cpu=r["machine"].get("cpu", "?"))
        lines.append("| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |")
    atomic_write_text(args.out / "zoo.md", "\n".join(lines) + "\n")


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    row = report(args.child, args.size, args.subnets, args.grouped, args.peers, args.peer_timeout)
    print("ROW " + json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", help="model names (default: the whole zoo)")
    ap.add_argument("--quick", action="store_true", help=f"{len(QUICK)} models, 2 subnets")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--subnets", type=int, default=5)
    ap.add_argument("--grouped", action=argparse.BooleanOptionalAction, default=True,
                    help="convert with ConvertConfig(grouped=...): grouped convs searchable (default: on)")
    ap.add_argument("--peers", type=lambda s: [p for p in s.split(",") if p and p != "none"], default=list(PEERS),
                    help="comma-separated: torch_pruning,fastnas (default both), or none")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per model, all of it (default 1800)")
    ap.add_argument("--peer-timeout", type=int, default=600, help="seconds per peer (default 600)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder of zoo.md and zoo.json (default: %(default)s)")
    ap.add_argument("--fresh", action="store_true",
                    help="measure every model again (default: keep the rows of an earlier run into --out with the "
                         "same settings, and run the models it has not reached)")
    ap.add_argument("--redo", nargs="+", metavar="MODEL", help="measure these models again, keep the other rows")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.quick:
        args.subnets = min(args.subnets, 2)
    models = args.models or (QUICK if args.quick else ZOO)
    unknown = sorted(set(args.redo or []) - set(models))
    if unknown:
        print(f"zoo_report: error: --redo {' '.join(unknown)}: not among the models of this run", file=sys.stderr)
        sys.exit(2)
    kept = earlier_rows(args, models)
    rows: list[dict] = list(kept.values())
    for name in models:
        if name in kept:
            continue
        cmd = [sys.executable, __file__, "--child", name, "--size", str(args.size), "--subnets", str(args.subnets),
               f"--{'' if args.grouped else 'no-'}grouped", "--peers", ",".join(args.peers) or "none",
               "--peer-timeout", str(args.peer_timeout), "--threads", str(args.threads)]
        t0 = time.perf_counter()
        try:
            done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=args.timeout,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
            found = [ln[4:] for ln in done.stdout.splitlines() if ln.startswith("ROW ")]
            rc = done.returncode
            tail = (done.stderr.strip().splitlines() or [f"exit code {rc}"])[-1] if rc >= 0 else \
                f"killed by {signal.Signals(-rc).name}"  # SIGKILL: out of memory, most likely
            row = json.loads(found[-1]) if found else {"model": name, "error": f"fails: {tail[:200]}"}
        except subprocess.TimeoutExpired:
            row = {"model": name, "error": f"fails: timed out after {args.timeout} s"}
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        row["machine"] = fingerprint()
        rows.append(row)
        print(json.dumps(row), flush=True)
        write(rows, args, models)  # after every model, atomically: a long run that is stopped still leaves its rows
    if len(rows) == len(kept):  # every row was kept: write the report anyway (a change to the report itself)
        write(rows, args, models)
    print(f"wrote {args.out / 'zoo.md'}")


if __name__ == "__main__":
    main()
