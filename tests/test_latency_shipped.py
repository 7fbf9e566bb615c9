"""Shipped tables: which fingerprint differences refuse a table and which only warn, where validation writes,
and that the tables travel with the package."""
from __future__ import annotations

import json
import shutil
import tomllib
import warnings
from pathlib import Path

import pytest

from slimnas import SlimnasError
from slimnas.cli import main
from slimnas.latency.fingerprint import DEVICE_KEYS, MODEL_KEYS, FingerprintWarning, check
from slimnas.tables import shipped_tables_dir, table_dirs

from .latency_helpers import FAST, MODEL_ARGS, tiny_supernet

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.parent for p in (ROOT / "latency_tables").glob("*/fingerprint.json"))
FP = json.loads((ROOT / "latency_tables" / "mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32" / "fingerprint.json").read_text())
KEYS = DEVICE_KEYS + MODEL_KEYS


def test_kernel_build_and_patch_version_only_warn():
    here = dict(FP, os="Linux 6.18.44-fc-v857", backend_version="1.31.4", cores=4)
    with pytest.warns(FingerprintWarning) as caught:
        check(here, FP, KEYS, "machine/runtime")
    (w,) = caught
    text = str(w.message)
    assert "os is" in text and "backend_version is" in text and "cores is" in text and "slimnas latency validate" in text
    here = dict(FP, backend_version="1.32.0")  # a minor release: the kernels may differ a little, the probe rescales
    with pytest.warns(FingerprintWarning, match="backend_version"):
        check(here, FP, KEYS, "machine/runtime")


def test_exact_keys_are_refused_naming_the_key():
    for key, value in (("threads", 2), ("batch", 8), ("dtype", "fp16"), ("backend", "torch"), ("device_name", "Other CPU"),
                       ("input_shape", [3, 64, 64]), ("space_hash", "0" * 16), ("backend_version", "2.0.0")):
        here = dict(FP, **{key: value})
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # refused, not warned about
            with pytest.raises(SlimnasError) as err:
                check(here, FP, KEYS, "machine/runtime")
        msg = str(err.value)
        assert len(msg.splitlines()) == 1 and f"{key} is" in msg, msg
        others = [k for k in KEYS if k != key and f"{k} is" in msg]
        assert not others, msg


def test_identical_fingerprint_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check(dict(FP), FP, KEYS, "machine/runtime") == []


def test_shipped_tables_are_found_and_packaged():
    assert shipped_tables_dir() is not None and {p.name for p in SHIPPED} <= {p.name for p in shipped_tables_dir().iterdir()}
    assert any(d.resolve() == (ROOT / "latency_tables").resolve() for d in table_dirs())
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    for table in SHIPPED:  # every shipped table, with every file of it, goes into the wheel
        dest = f"share/slimnas/latency_tables/{table.name}"
        assert dest in data_files, f"{table.name} is not packaged: add it to [tool.setuptools.data-files]"
        for f in ("entries.csv", "fingerprint.json", "calibration.json"):
            assert f"latency_tables/{table.name}/{f}" in data_files[dest] or f"latency_tables/{table.name}/*" in data_files[dest]


@pytest.fixture(scope="module")
def tiny_table_dir(tmp_path_factory):
    from slimnas.latency import create_backend, profile

    out = tmp_path_factory.mktemp("tiny_table")
    profile(tiny_supernet(), create_backend("onnxruntime"), out, "tiny", FAST, model_args=MODEL_ARGS)
    return out


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def test_validate_without_out_leaves_the_table_folder_alone(tiny_table_dir, tmp_path, monkeypatch, capsys):
    table = tmp_path / "ro_table"
    shutil.copytree(tiny_table_dir, table)
    before = _snapshot(table)
    for p in [table, *table.iterdir()]:  # read-only (root ignores it: the snapshot is the proof)
        p.chmod(0o555 if p.is_dir() else 0o444)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    try:
        assert main(["latency", "validate", "--table", str(table), "--samples", "2", "--rounds", "1"]) == 0
    finally:
        for p in [table, *table.iterdir()]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert _snapshot(table) == before
    written = list((work / "runs").glob("validate_*/validate.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["samples"] == 2
    assert str(written[0].parent.relative_to(work)) in capsys.readouterr().out


def test_validate_refuses_another_cpu_naming_one_key(tiny_table_dir, tmp_path, capsys):
    table = tmp_path / "other_cpu"
    shutil.copytree(tiny_table_dir, table)
    fp = json.loads((table / "fingerprint.json").read_text())
    fp.update(device_name="Some Other CPU", cpu_model="Some Other CPU", os="Linux 0.0-other")
    (table / "fingerprint.json").write_text(json.dumps(fp))
    assert main(["latency", "validate", "--table", str(table), "--samples", "2", "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "device_name is 'Some Other CPU'" in err, err
    assert "cpu_model is" not in err and "os is" not in err
    assert not (tmp_path / "v").exists()


def test_shipped_table_found_by_name_from_any_folder(tmp_path, monkeypatch):
    from slimnas.tables import resolve_table

    monkeypatch.chdir(tmp_path)
    name = "latency_tables/mobilenet_v2_32_onnxruntime_cpu_t1_b1_fp32"
    assert resolve_table(name).resolve() == (ROOT / name).resolve()
