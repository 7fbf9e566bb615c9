"""The ``slimnas`` command: exit codes and one-line errors.

A few cases run the installed command in a real subprocess (the entry point, ``python -m slimnas``); the rest call
the same ``slimnas.cli.main`` in this process, which is what the subprocess runs, without paying for a fresh
interpreter and its imports each time (several seconds a case)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torchvision

from tests.conftest import ROOT


def slimnas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slimnas", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """``slimnas.cli.main(args)`` here, with what it printed, shaped like a finished subprocess."""
    from slimnas.cli import main

    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["slimnas", *args], code, out.out, out.err)


def test_inspect_prints_the_groups():
    r = slimnas("inspect", "mobilenet_v2", "--num-classes", "10", "--input-size", "32")
    assert r.returncode == 0, r.stderr
    assert "25 searchable" in r.stdout
    assert "features.2.conv.2" in r.stdout and "8 16 24" in r.stdout and "frozen: model output" in r.stdout


def test_inspect_reports_frozen_parts_of_a_custom_model(capsys):
    # (TinyNet's grouped conv, the frozen part this used to show, is searchable since grouped convs are on by default)
    r = in_process(capsys, "inspect", "tests.nets:hard_coded_view", "--input-size", "16")
    assert r.returncode == 0, r.stderr
    assert "frozen by the tracer" in r.stdout and "view to a fixed shape at view" in r.stdout


def test_model_as_a_flag(capsys):
    r = in_process(capsys, "inspect", "--model", "tests.nets:tiny_net", "--input-size", "16")
    assert r.returncode == 0, r.stderr
    assert "TinyNet at 16x16" in r.stdout and "8 searchable" in r.stdout and "stem.0, stem.1, grouped.0" in r.stdout


def test_help_has_examples():
    r = slimnas("inspect", "--help")
    assert r.returncode == 0 and "examples:" in r.stdout and "slimnas inspect mobilenet_v2" in r.stdout


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    torch.save(torchvision.models.mobilenet_v2(num_classes=10).state_dict(), d / "c10.pth")
    (d / "junk.pth").write_bytes(b"not a checkpoint")
    return d


@pytest.mark.parametrize("args, message", [
    (["inspect", "mobilenet_v22"], "unknown model name 'mobilenet_v22': did you mean mobilenet_v2"),
    (["inspect", "mobilenet_v2", "--weights", "{d}/c10.pth"], "pass num_classes=10"),
    (["inspect", "resnet18", "--num-classes", "10", "--weights", "{d}/c10.pth"], "does not fit ResNet"),
    (["inspect", "mobilenet_v2", "--weights", "{d}/junk.pth"], "junk.pth is not a"),
    (["inspect", "mobilenet_v2", "--ratios", "0.5,1.7"], "width ratios out of range: 1.7"),
    (["inspect", "mobilenet_v2", "--ratios", "half"], "--ratios must be comma-separated numbers"),
    (["inspect", "tests.nets:untraceable_net", "--input-size", "32"], "cannot trace UntraceableNet.forward"),
    (["inspect", "--input-size", "32"], "no model given"),
    (["inspect", "mobilenet_v2", "--model", "resnet18"], "two models given"),
])
def test_bad_input_is_one_line_and_exit_2(files, capsys, args, message):
    # the first case through the installed command, the others through the same main() in this process
    run = slimnas if args[1] == "mobilenet_v22" else lambda *a: in_process(capsys, *a)
    r = run(*[a.format(d=files) for a in args])
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
