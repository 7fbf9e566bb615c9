"""Bad input to `slimnas slim`: one line on stderr, exit code 2, and no run folder left behind."""
from __future__ import annotations

import json
import shutil

import pytest

from slimnas.cli import main
from tests.latency_helpers import tiny_slim_table

from .conftest import ROOT
from .slim_helpers import TINY_YAML, slimnas as cli, write_config

SHIPPED = ROOT / "latency_tables" / "mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32"


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A quick latency table of TinyNet at 32 px measured here (fast, not accurate, timing)."""
    return tiny_slim_table(tmp_path_factory.mktemp("table") / "tiny32")


def with_table(path) -> tuple[str, str]:
    """A replacement that points the tiny config at a latency table."""
    return "latency: {rounds: 2", f'latency: {{table: "{path}", rounds: 2'


def config_with(tmp_path, *replacements, extra: str = ""):
    text = TINY_YAML
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return write_config(tmp_path, text + extra)


def fails(capsys, tmp_path, config, *fragments):
    out = tmp_path / "run"
    code = main(["slim", "--config", str(config), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    for f in fragments:
        assert f in err, err
    assert not out.exists(), "bad input must leave no run folder"
    return err


def test_budget_below_the_smallest_subnet_states_the_smallest_achievable(capsys, tmp_path, table):
    cfg = config_with(tmp_path, with_table(table),
                      ('["latency<=0.8x"]', '["latency<=0.05x"]'))
    err = fails(capsys, tmp_path, cfg, "is below the smallest subnet", "predicted", "raise it to at least")
    assert "0.05x" in err


def test_flops_budget_below_the_smallest_subnet(capsys, tmp_path, table):
    cfg = config_with(tmp_path, with_table(table),
                      ('["latency<=0.8x"]', '["latency<=0.8x", "flops<=1k"]'))
    fails(capsys, tmp_path, cfg, "FLOPs budget 1k", "is below the smallest subnet")


def test_table_of_another_model(capsys, tmp_path):
    cfg = config_with(tmp_path, with_table(SHIPPED))
    fails(capsys, tmp_path, cfg, str(SHIPPED), "measured for mobilenet_v2", "does not fit this network", "space_hash")


def test_table_of_another_input_shape(capsys, tmp_path, table):
    cfg = config_with(tmp_path, with_table(table),
                      ("input_size: 32", "input_size: 48"))
    fails(capsys, tmp_path, cfg, "does not fit this network", "input_shape is [3, 32, 32] in the table but [3, 48, 48] here")


def test_table_of_another_device(capsys, tmp_path, table):
    other = tmp_path / "other_cpu"
    shutil.copytree(table, other)
    fp = json.loads((other / "fingerprint.json").read_text())
    fp["cpu_model"] = fp["device_name"] = "Some Other CPU 9000"
    (other / "fingerprint.json").write_text(json.dumps(fp))
    cfg = config_with(tmp_path, with_table(other))
    fails(capsys, tmp_path, cfg, "does not fit this machine/runtime", "Some Other CPU 9000")


def test_missing_table_folder(capsys, tmp_path):
    cfg = config_with(tmp_path, with_table(tmp_path / "nope"))
    fails(capsys, tmp_path, cfg, "does not exist", "slimnas profile")


def test_missing_data_folder(capsys, tmp_path):
    cfg = config_with(tmp_path, ("data: {source: digits}", f'data: {{source: "{tmp_path / "no_such_data"}"}}'))
    fails(capsys, tmp_path, cfg, "no_such_data does not exist")


def test_empty_data_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = config_with(tmp_path, ("data: {source: digits}", f'data: {{source: "{tmp_path / "empty"}"}}'))
    fails(capsys, tmp_path, cfg, "has no class sub-folders")


def test_data_folder_without_images(capsys, tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / "noimg" / "train" / cls).mkdir(parents=True)
        (tmp_path / "noimg" / "train" / cls / "notes.txt").write_text("not an image")
    cfg = config_with(tmp_path, ("data: {source: digits}", f'data: {{source: "{tmp_path / "noimg"}"}}'))
    fails(capsys, tmp_path, cfg, "has 2 class folders but no image files")


def test_unknown_constraint_name(capsys, tmp_path):
    cfg = config_with(tmp_path, ('["latency<=0.8x"]', '["memory<=5M"]'))
    fails(capsys, tmp_path, cfg, "unknown constraint 'memory<=5M'", "latency, flops or params")


def test_unknown_constraint_name_on_the_command_line(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["slim", "--config", str(write_config(tmp_path)), "--constraint", "speed<=2ms", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown constraint 'speed<=2ms'" in err and not out.exists()


def test_broken_yaml_through_the_installed_command(tmp_path):
    cfg = write_config(tmp_path, "model:\n  name: mobilenet_v2\n  input_size: [32\nsearch: {population: 4}\n")
    r = cli("slim", "--config", str(cfg), "--out", str(tmp_path / "run"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken YAML" in lines[0] and "tiny.yaml line 4" in lines[0], r.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, fragment", [
    ("search:\n  populaton: 4\n", "line 2: unknown key 'search.populaton'; search takes population, generations"),
    ("model:\n  input_size: big\n", "line 2: model.input_size must be an integer, got 'big'"),
    ("constraints: latency<=2ms\n", "line 1: constraints must be a list of a string"),
    ("finetune:\n  train:\n    lr: -1\n", "line 2: finetune.train: lr (learning rate) must be positive"),
    ("- just\n- a list\n", "must be a YAML mapping of sections"),
])
def test_config_mistakes_name_the_line_and_key(capsys, tmp_path, text, fragment):
    fails(capsys, tmp_path, write_config(tmp_path, text), fragment)


def test_tensorrt_asked_for_explicitly_without_tensorrt(capsys, tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    fails(capsys, tmp_path, write_config(tmp_path, TINY_YAML + "export: {tensorrt: true}\n"), "pip install slimnas[trt]")
