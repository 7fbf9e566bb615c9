"""What `slimnas slim` and `slimnas train` check before any work: the strategy, its options and the bins, the
class count of the model against the data, and a model without weights (said at the start)."""
from __future__ import annotations

import numpy as np
import pytest

from slimnas.cli import main

from .slim_helpers import TINY_YAML, write_config


def image_folder(root, classes=("cat", "dog", "frog"), per_class: int = 16):
    """A real ImageFolder tree of tiny PNG images: ROOT/train/<class>/*.png."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i, cls in enumerate(classes):
        d = root / "train" / cls
        d.mkdir(parents=True)
        for j in range(per_class):
            pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            pixels[..., i % 3] = 255  # each class its own colour cast
            Image.fromarray(pixels).save(d / f"{j}.png")
    return root


def slim_fails(capsys, tmp_path, text):
    out = tmp_path / "run"
    code = main(["slim", "--config", str(write_config(tmp_path, text)), "--out", str(out), "--no-progress"])
    stdout, err = capsys.readouterr()
    assert code == 2, stdout[-2000:] + err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists(), "bad input must leave no run folder"
    return stdout, err


@pytest.mark.parametrize("old, new, fragment", [
    ("strategy: cafenet", "strategy: cafenett", "unknown training strategy 'cafenett'"),
    ("options: {k: 2}", "options: {kk: 2}", "strategy 'cafenet' has no option kk"),
    ("options: {k: 2}", "options: {k: 2}\n  bins: 'flops:x'", "bins must look like flops:N"),
    ("options: {k: 2}", "options: {k: 2}\n  bins: 'latency:4:no/such/table'", "no/such/table does not exist"),
])
def test_strategy_options_and_bins_are_checked_before_anything_is_timed(capsys, tmp_path, old, new, fragment):
    assert old in TINY_YAML
    stdout, err = slim_fails(capsys, tmp_path, TINY_YAML.replace(old, new))
    assert fragment in err and "supernet: " in err, err
    assert "timing the original" not in stdout, "refused before the reference timing (and before base training)"


def test_a_class_count_that_differs_from_the_model_is_an_error(capsys, tmp_path):
    data = image_folder(tmp_path / "three")
    text = TINY_YAML.replace("data: {source: digits}", f'data: {{source: "{data}"}}')
    assert "num_classes: 10" in text
    stdout, err = slim_fails(capsys, tmp_path, text)
    assert "model.num_classes is 10 but the data has 3 classes (cat, dog, frog)" in err, err
    assert "timing the original" not in stdout

    out = tmp_path / "train_run"
    code = main(["train", "tests.nets:tiny_net", "--num-classes", "10", "--data", str(data), "--input-size", "16",
                 "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "4", "--eval-images", "0", "--no-progress",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "num_classes is 10 but the data has 3 classes (cat, dog, frog)" in err, err
    assert not (out / "checkpoint.pt").exists()


def test_a_model_without_weights_is_said_in_one_line_at_the_start(capsys, tmp_path):
    no_base = "\n".join(line for line in TINY_YAML.splitlines() if not line.startswith("base:"))
    unreachable = no_base.replace('["latency<=0.8x"]', '["flops<=1k"]')  # refused by the first budget check
    stdout, _ = slim_fails(capsys, tmp_path, unreachable)
    warnings = [line for line in stdout.splitlines() if "random initialisation" in line]
    assert len(warnings) == 1 and stdout.splitlines()[0] == warnings[0], stdout
    assert warnings[0].startswith("warning: no model.weights (--weights) and no base: section")
    # with a base: section (trained first) there is nothing to warn about
    stdout, _ = slim_fails(capsys, tmp_path, TINY_YAML.replace('["latency<=0.8x"]', '["flops<=1k"]'))
    assert "random initialisation" not in stdout

    code = main(["train", "tests.nets:tiny_net", "--input-size", "16", "--epochs", "1", "--steps-per-epoch", "1",
                 "--batch-size", "16", "--eval-images", "0", "--no-progress", "--out", str(tmp_path / "t")])
    stdout = capsys.readouterr().out
    assert code == 0
    assert stdout.splitlines()[0].startswith("warning: no weights (--weights): tests.nets:tiny_net is trained from its "
                                             "random initialisation"), stdout
