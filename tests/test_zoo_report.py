"""benchmarks/zoo_report.py: its model list is issue 14's, a failing model is a row (not the end of the run), and
its parity checks are stated relative to the output's scale."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import zoo_report  # after the path insert


def test_default_list_is_every_torchvision_cnn_the_timm_and_segmentation_models():
    names = torchvision.models.list_models(module=torchvision.models)
    assert set(zoo_report.ZOO) >= {n for n in names if n not in zoo_report.SKIPPED}
    assert sorted(zoo_report.SKIPPED) == sorted(n for n in names if n.startswith(("vit_", "swin_", "maxvit")))
    assert "convnext_tiny" in zoo_report.ZOO and "inception_v3" in zoo_report.ZOO and "maxvit_t" not in zoo_report.ZOO
    assert len([n for n in zoo_report.ZOO if n.startswith("timm:")]) == 11
    assert {"lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "tinynet"} <= set(zoo_report.ZOO)


def test_checks_judge_the_function_in_fp64_and_the_rest_relative_to_the_output_scale():
    row = {"scale": 3.41, "params_M": 2.2, "full_vs_original": 1.65e-5, "supernet_vs_export": 0.0,
           "export_vs_onnx": 7.9e-7, "flops_rel_err": 0.0, "params_rel_err": 0.0, "full_vs_original_fp64": 2.8e-14,
           "broadened_vs_original": 1.4e-5, "broadened_vs_original_fp64": 3e-14}
    assert zoo_report.checks(row) == "ok"  # timm mobilenetv2_100: fp32 reassociation, fp64 unchanged
    assert zoo_report.checks(dict(row, full_vs_original=1e-3)) == "ok"  # fp32 rounding alone fails nothing
    assert zoo_report.checks(dict(row, full_vs_original_fp64=1e-6)) == "FAIL full_vs_original_fp64"  # a real change
    assert zoo_report.checks(dict(row, export_vs_onnx=5e-4)) == "FAIL export_vs_onnx"  # > 1e-4 x 3.41
    assert zoo_report.checks(dict(row, export_vs_onnx=3e-4)) == "ok"
    missing = {k: v for k, v in row.items() if k != "export_vs_onnx"}
    assert zoo_report.checks(missing) == "FAIL export_vs_onnx"  # a check that did not run is not a pass
    giant = {k: v for k, v in row.items() if not k.startswith("broadened") and not k.endswith("fp64")}
    giant["params_M"] = 638.0  # no fp64 copy nor broadened supernet: fp32 judged at 1e-5 x scale
    assert zoo_report.checks(giant) == "ok"
    assert zoo_report.checks(dict(giant, full_vs_original=5e-5)) == "FAIL full_vs_original"


def test_a_failing_model_is_a_row_and_the_run_goes_on(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "zoo_report.py"), "--models", "no_such_model",
                        "tinynet", "--subnets", "1", "--peers", "none", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads((tmp_path / "zoo.json").read_text())["rows"]
    assert rows[0]["model"] == "no_such_model" and rows[0]["error"].startswith("fails: ")
    tiny = rows[1]
    assert tiny["model"] == "tinynet" and zoo_report.checks(tiny) == "ok" and tiny["min_over_original"] < 1
    md = (tmp_path / "zoo.md").read_text()
    assert "**0 of 1 models meet min/original FLOPs <= 0.20**; errors: no_such_model" in md  # tinynet: 0.244
    assert "Skipped (transformers, not CNNs): maxvit_t" in md
    # a rerun into the same folder with the same settings keeps tinynet's row and runs only the failed model again
    again = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "zoo_report.py"), "--models", "no_such_model",
                            "tinynet", "--subnets", "1", "--peers", "none", "--out", str(tmp_path)],
                           cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "1 of 2 models already measured" in again.stderr
    rows2 = json.loads((tmp_path / "zoo.json").read_text())["rows"]
    assert [r["model"] for r in rows2] == ["no_such_model", "tinynet"] and rows2[1] == tiny


def test_a_rerun_with_other_settings_or_fresh_keeps_nothing(tmp_path):
    import argparse

    machine = {"cpu": "X", "cores": 2}
    old = {"command": "python benchmarks/zoo_report.py --size 64 --subnets 2 --grouped --peers torch_pruning,fastnas "
                      "--models a b", "machine": machine,
           "rows": [{"model": "a", "min_over_original": 0.1}, {"model": "b", "error": "fails: x"}]}  # no "settings"
    (tmp_path / "zoo.json").write_text(json.dumps(old))
    args = argparse.Namespace(size=64, subnets=2, grouped=True, peers=["torch_pruning", "fastnas"], out=tmp_path,
                              fresh=False, redo=None)
    kept = zoo_report.earlier_rows(args, ["a", "b", "c"])
    assert list(kept) == ["a"] and kept["a"]["machine"] == machine  # read from its command; failed row run again
    assert zoo_report.earlier_rows(argparse.Namespace(**{**vars(args), "subnets": 3}), ["a", "b"]) == {}
    assert zoo_report.earlier_rows(argparse.Namespace(**{**vars(args), "peers": []}), ["a", "b"]) == {}
    assert zoo_report.earlier_rows(argparse.Namespace(**{**vars(args), "fresh": True}), ["a", "b"]) == {}
    assert zoo_report.earlier_rows(argparse.Namespace(**{**vars(args), "redo": ["a"]}), ["a", "b"]) == {}  # --redo a


def test_bad_redo_and_a_broken_report_are_one_line_errors(tmp_path):
    def run(*extra):
        return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "zoo_report.py"), "--models", "tinynet",
                               "--peers", "none", "--out", str(tmp_path), *extra],
                              cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)

    r = run("--redo", "resnet18")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "zoo_report: error: --redo resnet18: not among the models of this run"]
    (tmp_path / "zoo.json").write_text("{broken")
    r = run()
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "is not a zoo report" in r.stderr
    assert (tmp_path / "zoo.json").read_text() == "{broken" and not (tmp_path / "zoo.md").exists()  # untouched
