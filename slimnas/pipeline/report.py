"""``report.md``: what a slim run was asked, what it measured, and what it handed back.

Accuracies compare deployable models as they are exported (eval mode, their saved BatchNorm statistics, the
same images); where recalibrating the original's statistics moves its score by more than :data:`BN_WARN`, both
figures are shown with a warning. The report ends with how to feed ``model.onnx`` (its metadata) and a few
lines that classify an image file with it (:data:`ONNX_SNIPPET`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from ..fileio import atomic_write_text

BN_WARN = 0.01  # a change of the original's top-1 by recalibration beyond this (one point) is shown and warned about

# Classifies IMAGE with model.onnx using only its metadata, numpy, PIL and onnxruntime (tested as written).
ONNX_SNIPPET = """\
import json, numpy as np, onnxruntime as ort
from PIL import Image
sess = ort.InferenceSession("model.onnx")
m = {k: json.loads(v) for k, v in sess.get_modelmeta().custom_metadata_map.items()}
img = Image.open("image.jpg").convert("RGB"); w, h = img.size; r, c = m["resize"], m["crop"]
img = img.resize((int(r * w / h), r) if w > h else (r, int(r * h / w)), Image.BILINEAR)
left, top = round((img.width - c) / 2), round((img.height - c) / 2)
x = (np.asarray(img.crop((left, top, left + c, top + c)), np.float32) / 255 - m["mean"]) / m["std"]
logits = sess.run(None, {"input": x.transpose(2, 0, 1)[None].astype(np.float32)})[0]
print(m["classes"][int(logits.argmax())])
"""


def _ms(v: Optional[float]) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _pct(v: Optional[float], signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:+.1f}%" if signed else f"{v:.1f}%"


def _acc(v: Optional[float]) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _m(v: Optional[float]) -> str:
    return "–" if v is None else f"{v / 1e6:.3f}"


def _num(v) -> Optional[float]:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def bn_shift(original: dict, split: str = "val") -> Optional[float]:
    """How much recalibrating the original's BatchNorm statistics changes its top-1 on ``split`` (None: unknown)."""
    a, b = _num(original.get(f"{split}_top1")), _num(original.get(f"{split}_top1_recalibrated"))
    return None if a is None or b is None else b - a


def _accuracy_rows(o: dict, c: dict) -> tuple[list[str], list[str]]:
    """The accuracy rows of the result table, and the paragraphs saying how they were scored."""
    calib = o.get("calib_images") or c.get("calib_images")
    tuned = f"`model.pt` after {c['finetune_steps']} fine-tune steps{', distilled' if c.get('distilled') else ''}"
    val_shift, test_shift = bn_shift(o, "val"), bn_shift(o, "test")
    warn = any(d is not None and abs(d) > BN_WARN for d in (val_shift, test_shift))
    rows = [f"| validation top-1 as exported (eval mode, saved BN statistics; {c['val_images']} images) | "
            f"{_acc(o.get('val_top1'))} | **{_acc(c.get('val_top1'))}** ({tuned}) |"]
    if warn:
        rows.append(f"| validation top-1 after BN recalibration ({calib} training images) | "
                    f"{_acc(o.get('val_top1_recalibrated'))} | {_acc(c.get('val_top1'))} (its statistics were "
                    "recalibrated so before saving) |")
    if o.get("test_top1") is not None:
        rows.append(f"| test top-1 as exported (reporting only; {c.get('test_images')} images) | {_acc(o.get('test_top1'))} | "
                    f"{_acc(c.get('test_top1'))} |")
        if warn and o.get("test_top1_recalibrated") is not None:
            rows.append(f"| test top-1 after BN recalibration | {_acc(o.get('test_top1_recalibrated'))} | "
                        f"{_acc(c.get('test_top1'))} |")
    notes = [f"Accuracy: every model is scored as it is deployed, in eval mode with the BatchNorm statistics it is "
             f"saved with, on the same images. The chosen subnet's statistics were re-estimated on {calib or '–'} "
             "training images before `model.pt` was saved, so its figure is that file's; the original is scored as "
             "given" + (f" (recalibrating its statistics the same way changes its validation top-1 by "
                        f"{val_shift * 100:+.1f} points)." if val_shift is not None and not warn else ".")
             + " The supernet estimate is the search's score (after recalibration, before the fine-tune)."]
    if warn:
        ref = _num(o.get("val_top1_recalibrated"))
        gap = f"{(_num(c.get('val_top1')) - ref) * 100:+.1f}" if ref is not None and _num(c.get("val_top1")) is not None else "–"
        notes.append(f"**Warning: the checkpoint's BN statistics do not fit its weights.** Recalibrating the original's "
                     f"BatchNorm statistics on {calib} training images changes its validation top-1 from "
                     f"{_acc(o.get('val_top1'))} to {_acc(o.get('val_top1_recalibrated'))} ({val_shift * 100:+.1f} points"
                     + (f"; test {test_shift * 100:+.1f}" if test_shift is not None else "") +
                     f"). Judge the slimming against the recalibrated figure: the chosen model scores {gap} points against it. "
                     "Re-estimate the checkpoint's statistics before deploying it (`tools/train_base.py` saves "
                     "checkpoints that way).")
    return rows, notes


def _deploy_lines(d: Optional[dict]) -> list[str]:
    """How to feed the exported files, from model.pt's metadata (model.onnx's metadata_props repeat it)."""
    if not d or not d.get("input"):
        return []
    i = d["input"]
    classes = d.get("classes") or []
    shown = ", ".join(f"`{c}`" for c in classes[:20]) + (f", ... ({len(classes)} in all)" if len(classes) > 20 else "")
    batch = d.get("onnx_batch", "dynamic")
    return ["## Feeding the exported model", "",
            f"- input `{i['layout']}` float32 of shape (batch, {', '.join(map(str, i['input_shape']))}); "
            f"`model.onnx` batch axis: {'dynamic (`batch`)' if batch == 'dynamic' else f'fixed at {batch}'}",
            f"- {i['color']} pixels / 255; shorter side resized to {i['resize']} px ({i['interpolation']}); centre crop "
            f"{i['crop']}x{i['crop']}",
            f"- normalised per channel: mean {', '.join(f'{v:.4f}' for v in i['mean'])}; "
            f"std {', '.join(f'{v:.4f}' for v in i['std'])}",
            f"- output: logits of {len(classes) or '–'} classes, in this order: {shown or '–'}",
            *_int8_lines(d.get("int8")),
            "", "`model.pt` records this under `slimnas.input` and `slimnas.classes`; `model.onnx` in its "
            "`metadata_props` (JSON values). Classify an image file with `model.onnx` alone:", "", "```python",
            ONNX_SNIPPET.rstrip("\n"), "```", ""]


def _int8_lines(q: Optional[dict]) -> list[str]:
    """``model.int8.onnx``: how it was quantized and its accuracy as onnxruntime runs it (or why it is absent)."""
    if not q:
        return []
    if not q.get("written"):
        return [f"- `model.int8.onnx` not written: {q.get('reason', 'unknown reason')}"]
    line = f"- `model.int8.onnx`: onnxruntime static QDQ, calibrated on {q.get('calibration_images', '–')} training images"
    if q.get("test_top1") is not None:
        line += (f"; test top-1 {q['test_top1']:.4f} run in onnxruntime on {q.get('test_images', '–')} images "
                 f"(`model.onnx` {q['onnx_fp32_test_top1']:.4f} the same way)")
    if q.get("qat"):
        a = q["qat"]
        line += (f"; after a quantization-aware fine-tune of {a['steps']} steps (lr {a['lr']:g}, loss "
                 f"{a['first_loss']:.3f} → {a['last_loss']:.3f}, {a['seconds']} s)")
        if q.get("ptq_test_top1") is not None:
            line += f"; post-training quantization alone: test top-1 {q['ptq_test_top1']:.4f}"
    return [line]


def deploy_info(out: Path) -> Optional[dict]:
    """``model.pt``'s input spec and classes, and ``model.onnx``'s batch axis, of a run folder (None: no model.pt)."""
    if not (out / "model.pt").is_file():
        return None
    from ..models import read_exported

    meta = read_exported(out / "model.pt")["slimnas"]
    info = {"input": meta.get("input"), "classes": meta.get("classes")}
    if (out / "exports.json").is_file():
        exports = json.loads((out / "exports.json").read_text())
        info["onnx_batch"] = exports.get("onnx_batch", 1)
        info["int8"] = exports.get("int8")
    return info


def _share(v) -> str:
    v = _num(v)
    return "–" if v is None else f"{v * 100:.0f}%"


def _estimate_label(c: dict) -> str:
    what = "validation top-1" if c.get("estimator", "top1") == "top1" else "validation score (minus cross-entropy)"
    return f"{what} (supernet estimate ± SE)"


def _estimate(c: dict) -> str:
    se, n = _num(c.get("supernet_se")), c.get("supernet_images")
    text = _acc(c.get("supernet_top1"))
    if se is not None:
        text += f" ± {se:.4f}"
    return text + (f" ({n} images)" if n else "")


def _state_lines(v: pd.DataFrame) -> list[str]:
    """How far each round's original was from the budget's machine state (verify.state_ms), where it was set."""
    if "state_off_pct" not in v:
        return []
    o = v[(v["model"] == "original") & (v.get("target", "default") == "default")]
    off = [(int(r["round"]), float(r["state_off_pct"])) for _, r in o.iterrows() if np.isfinite(r["state_off_pct"])]
    if not off:
        return []
    return ["Machine state (`verify.state_ms`): each round's original against its latency in the budget's state: "
            + ", ".join(f"round {k} {x:+.1f}%" for k, x in off)
            + " (a round off by more than `verify.state_tol` waited and was timed again while `verify.state_wait_s` "
            "allowed; a model's ratio to the original moves with the machine's state).", ""]


def _pick_lines(c: dict) -> list[str]:
    """The chosen point's share of the budget and why it was chosen."""
    share = _num(c.get("budget_share"))
    reason = c.get("pick_reason") if isinstance(c.get("pick_reason"), str) else None
    if share is None and not reason:
        return []
    out = ["", "## The pick", ""]
    if share is not None:
        out.append(f"The chosen subnet uses **{share * 100:.0f}% of the latency budget** by measurement "
                   f"({_ms(c.get('median_ms'))} of {_ms(c.get('budget_ms'))} ms).")
    if reason:
        out.append(f"Why: {reason}.")
    out += ["", "Rule: among the measured candidates that meet the budget, the widest is taken unless a narrower one's "
            "supernet score is higher by more than the paired uncertainty (both scored on the same validation "
            "images; see `verify.margin_se`): a wider subnet of the same supernet is the better bet when the scores "
            "cannot tell them apart."]
    return out


def _target_lines(targets: list[dict]) -> list[str]:
    """A row per latency target: the chosen subnet measured on each, against that target's budget."""
    if len(targets) < 2:
        return []
    out = ["", "## Latency targets", "",
           "The chosen subnet must meet every budget, each checked by measurement on its own target (a fresh process "
           "per target, interleaved with the original there; relative budgets against the original the target says).",
           "", "| target | runtime | budget | measured ms | budget ms | share | x original (which) | meets |",
           "|---|---|---|---|---|---|---|---|"]
    for t in targets:
        out.append(f"| {t['name']} | {t['runtime']} | {', '.join(t['budgets']) or '–'} | **{_ms(t['median_ms'])}** | "
                   f"{_ms(t.get('budget_ms'))} | {_share(t.get('budget_share'))} | {t['ratio_to_original']:.3f}x of "
                   f"{_ms(t.get('reference_ms'))} ms ({t['reference']}) | {'yes' if t['meets'] else '**no**'} |")
    return out


def render(s: dict) -> str:
    o, c = s["original"], s["chosen"]
    lines = ["# slimnas slim report", "", f"Command: `{s['command']}`  ", f"Run folder: `{s['out']}`", "", "## Budget", ""]
    for b in s["budget"]:
        lines.append(f"- {b}")
    if c.get("budget_ms") is not None:
        lines.append(f"- checked by measurement on the device: a relative budget against the original timed in the "
                     f"same run ({_ms(c.get('original_now_ms'))} ms there, so {c['budget_ms']:.3f} ms), as the ratio "
                     "of the two latencies; an absolute one against the measured latency")
    lines += _target_lines(s.get("targets") or [])
    lines += ["", "## Result", "",
              "| | original | chosen subnet |", "|---|---|---|",
              f"| measured latency ms: quietest round's median (p10–p90 of all samples) | {_ms(o['median_ms'])} "
              f"(all rounds' p10–p90: {_ms(o['p10_ms'])}–{_ms(o['p90_ms'])}) | "
              f"**{_ms(c['median_ms'])}** (all rounds' p10–p90: {_ms(c['p10_ms'])}–{_ms(c['p90_ms'])}) |",
              f"| repeat error: even vs odd rounds (spread of all round medians) | {_pct(o.get('repeat_pct'))} "
              f"({_pct(o['spread_pct'])}) | {_pct(c.get('repeat_pct'))} ({_pct(c['spread_pct'])}) |",
              f"| predicted latency ms (anchored on the original in the same run) | – | {_ms(c['predicted_now_ms'])} "
              f"(error {_pct(c['error_pct'], True)} of measured) |",
              f"| latency relative to the original (measured, same run) | 1.000x | **{c['ratio_to_original']:.3f}x** "
              f"({c['speedup']:.2f}x faster) |",
              f"| FLOPs (M, multiply-accumulates) | {_m(o['flops'])} | {_m(c['flops'])} |",
              f"| params (M) | {_m(o['params'])} | {_m(c['params'])} |",
              f"| {_estimate_label(c)} | – | {_estimate(c)} |"]
    acc_rows, acc_notes = _accuracy_rows(o, c)
    lines += acc_rows
    lines += ["", "Latency is the quietest round's median (the statistic the tables are calibrated on); p10–p90 pools "
              "the samples of all rounds, slower ones included, so a quiet round's median can lie below that p10."]
    for note in acc_notes:
        lines += ["", note]
    lines += _pick_lines(c)
    p = s["predictor"]
    lines += ["", f"Chosen subnet: `{c['hash']}` (`subnet.json`). The original was first measured at "
              f"{_ms(o['median_ms'])} ms (relative budgets were resolved against it for the search). Predictions are "
              f"the latency table's, set to the speed of that timing: x{p.get('probe_factor', 1.0):.3f} by the reference "
              f"probe, then x{p.get('anchor_factor', 1.0):.3f} to match the original's measured latency (the table "
              f"predicted {_ms(p.get('original_predicted_by_probe_ms'))} ms for it); in verification, each round's "
              "predictions follow that round's timing of the original.", ""]
    v: pd.DataFrame = s["verify"]
    if v is not None and len(v):
        lines += ["## On-device verification (`verify.csv`)", "",
                  f"| round | model | {'supernet top-1' if c.get('estimator', 'top1') == 'top1' else 'supernet score'} ± SE | "
                  "budget share | predicted ms | measured ms (quietest round's median) | "
                  "p10–p90 ms (all rounds' samples) | repeat error | error | x original | meets budget |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, r in v.iterrows():
            name = r["model"] if str(r["model"]).startswith("original") else f"`{r['hash']}`" + (" **chosen**" if bool(r["chosen"]) else "")
            if isinstance(r.get("target"), str) and r["target"] != "default":
                name += f" on {r['target']}"
            meets = "" if str(r["model"]).startswith("original") else ("yes" if bool(r["meets_budget"]) else "no")
            se = _num(r.get("se"))
            score = _acc(r["accuracy"]) + (f" ± {se:.4f}" if se is not None else "")
            lines.append(f"| {r['round']} | {name} | {score} | {_share(r.get('budget_share'))} | "
                         f"{_ms(r['predicted_now_ms'])} | "
                         f"{_ms(r['median_ms'])} | {_ms(r['p10_ms'])}–{_ms(r['p90_ms'])} | {_pct(r.get('repeat_pct'))} | "
                         f"{_pct(r['error_pct'], True)} | {r['ratio_to_original']:.3f} | {meets} |")
        lines.append("")
        lines += _state_lines(v)
    se = s["search"]
    lines += ["## Search", "", f"{se['evaluations']} subnets scored (supernet accuracy on the validation split after BN "
              f"recalibration), {se['generations']} generations, stopped by {se['stopped']}, {se['pareto']} on the "
              f"Pareto front (`pareto.csv`, `pareto.png`), {se['wall_s']:.0f} s.", "",
              "## Wall time per stage", "", "| stage | seconds | |", "|---|---|---|"]
    for name, t in s["stages"].items():
        lines.append(f"| {name} | {t.get('wall_s', 0):.1f} | {'finished by an earlier invocation' if t.get('reused') else ''} |")
    lines.append(f"| total | {sum(t.get('wall_s', 0) for t in s['stages'].values()):.1f} | |")
    lines += ["", "## Device and latency table", "", f"Latency table: `{s['table']}` "
              f"(calibration a={s['predictor'].get('a', float('nan')):.3f}, b={s['predictor'].get('b', float('nan')):.3f} ms, "
              f"leave-one-out error {s['predictor'].get('error_pct', float('nan')):.1f}%)", "", "```"]
    lines += [f"{k}: {val}" for k, val in s["device"].items()]
    lines += ["```", ""]
    lines += _deploy_lines(s.get("deploy"))
    lines += ["## Files", ""]
    lines += [f"- `{f}`" for f in s["files"]]
    for note in s.get("skipped", []):
        lines.append(f"- skipped: {note}")
    return "\n".join(lines) + "\n"


def write_report(path: Path, summary: dict) -> Path:
    if "deploy" not in summary:
        summary = {**summary, "deploy": deploy_info(Path(path).parent)}
    atomic_write_text(path, render(summary))
    return path
