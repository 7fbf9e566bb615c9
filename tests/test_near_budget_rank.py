"""benchmarks/near_budget_rank.py: bad input is one line and exit code 2, before any output folder is made."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import near_budget_rank


def _arm(tmp_path: Path) -> Path:
    """A headline arm folder with the slim run's files the script checks for (their content is not read)."""
    arm = tmp_path / "arm" / "seed0"
    slim = arm / "0.5x" / "slim"
    slim.mkdir(parents=True)
    for name in ("search_history.csv", "verify.csv"):
        (slim / name).write_text("")
    weights = tmp_path / "base.pth"
    weights.write_bytes(b"")
    return arm


@pytest.mark.parametrize("case, needle", [
    ("no_arm", "--arm must be a finished headline slimnas arm"),
    ("no_supernet", "--supernet its supernet run"),
    ("few_subnets", "--subnets must be at least 3"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case, needle):
    arm = _arm(tmp_path)
    args = ["--out", str(tmp_path / "out"), "--weights", str(tmp_path / "base.pth")]
    if case == "no_arm":
        args += ["--arm", str(tmp_path / "missing")]
    elif case == "no_supernet":
        args += ["--arm", str(arm), "--supernet", str(tmp_path / "no_such_supernet")]
    else:
        (arm / "supernet").mkdir()
        args += ["--arm", str(arm), "--subnets", "2"]
    assert near_budget_rank.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_a_variant_arms_supernet_is_found_under_supernet(tmp_path, capsys):
    """With --supernet naming a folder that exists, the check passes on to the next one (--subnets here)."""
    arm = _arm(tmp_path)
    elsewhere = tmp_path / "base_arm" / "seed0" / "supernet[depth=1]"
    elsewhere.mkdir(parents=True)
    code = near_budget_rank.main(["--arm", str(arm), "--supernet", str(elsewhere), "--subnets", "2",
                                  "--weights", str(tmp_path / "base.pth"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "--subnets must be at least 3" in capsys.readouterr().err


def test_the_default_supernet_is_the_one_the_slim_run_searched(tmp_path, capsys):
    """Without --supernet, the script takes the supernet that the budget's slim run names in its config.yaml (a
    variant arm's lies under the base arm's folder, not ARM/supernet). Before, it looked for ARM/supernet and said
    "not found"; now that check passes and the next one (--subnets) speaks."""
    from slimnas.pipeline.config import SlimConfig, SupernetConfig, dump_config

    arm = _arm(tmp_path)
    elsewhere = tmp_path / "base_arm" / "seed0" / "supernet[depth=1]"
    elsewhere.mkdir(parents=True)
    (arm / "0.5x" / "slim" / "config.yaml").write_text(dump_config(SlimConfig(supernet=SupernetConfig(run=str(elsewhere)))))
    assert near_budget_rank.searched_supernet(arm / "0.5x" / "slim") == elsewhere
    code = near_budget_rank.main(["--arm", str(arm), "--subnets", "2", "--weights", str(tmp_path / "base.pth"),
                                  "--out", str(tmp_path / "out")])
    assert code == 2
    assert "--subnets must be at least 3" in capsys.readouterr().err
    assert not (arm / "supernet").exists()


def test_a_broken_slim_config_is_one_line_and_exit_2(tmp_path, capsys):
    arm = _arm(tmp_path)
    (arm / "0.5x" / "slim" / "config.yaml").write_text("supernet: [unclosed\n")
    code = near_budget_rank.main(["--arm", str(arm), "--weights", str(tmp_path / "base.pth"), "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("near_budget_rank: error:") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
