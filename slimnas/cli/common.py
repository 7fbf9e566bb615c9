"""Options several verbs share: which model, which input size, which search space, which latency targets."""
from __future__ import annotations

import argparse
from typing import Sequence

from ..errors import SlimnasError
from ..models import load_model
from ..space import DEFAULT_RATIOS, SpaceConfig
from ..supernet import ConvertConfig, Supernet, convert


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="torchvision name (mobilenet_v2), package.module:factory, or a saved slimnas model")
    p.add_argument("--model", dest="model_flag", metavar="NAME", help="the model, as a flag instead of positionally")
    p.add_argument("--weights", help="state_dict file to load (read with weights_only=True)")
    p.add_argument("--num-classes", type=int, help="classifier outputs (default: the architecture's default)")
    p.add_argument("--input-size", type=int, default=224, help="square input image size (default: 224)")


def add_space_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ratios", default=",".join(f"{r:g}" for r in DEFAULT_RATIOS),
                   help="candidate width ratios, comma-separated (default: %(default)s)")
    p.add_argument("--divisor", type=int, default=8, help="round candidate widths to multiples of this (default: 8)")
    p.add_argument("--max-ratio", type=float, default=1.0,
                   help="broaden up to this multiple of the checkpoint's widths (BS-NAS; default: 1.0)")
    p.add_argument("--conv-groups", choices=("whole", "narrow"), default="whole",
                   help="grouped convs (ResNeXt, RegNet): keep whole conv groups, the group count following the width "
                        "(default), or narrow every conv group, the count staying")
    p.add_argument("--depth", action="store_true",
                   help="elastic depth: each stage of skippable residual blocks may keep only its first k blocks "
                        "(`slimnas inspect --depth` lists them)")
    p.add_argument("--kernel-sizes", default="",
                   help="elastic kernels: each depthwise conv with 'same' padding chooses its kernel size from these, "
                        "comma-separated (e.g. 3,5,7; default: fixed kernels)")


def resolve_model(args: argparse.Namespace) -> None:
    """The model named positionally or with ``--model`` (one of them) into ``args.model``."""
    flag = getattr(args, "model_flag", None)
    if args.model is not None and flag is not None and args.model != flag:
        raise SlimnasError(f"two models given ({args.model!r} and --model {flag!r}): give one")
    args.model = args.model if args.model is not None else flag
    if args.model is None:
        raise SlimnasError("no model given: name one, e.g. `mobilenet_v2` or `--model mobilenet_v2` "
                           "(a torchvision name, package.module:factory, or a saved slimnas model)")


def parse_ratios(text: str) -> tuple[float, ...]:
    try:
        ratios = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise SlimnasError(f"--ratios must be comma-separated numbers such as 0.5,0.75,1.0, got {text!r}") from None
    if not ratios:
        raise SlimnasError("--ratios lists no ratio; give e.g. 0.5,0.75,1.0")
    return ratios


def supernet_from_args(args: argparse.Namespace) -> Supernet:
    if args.input_size < 1:
        raise SlimnasError(f"--input-size must be positive, got {args.input_size}")
    model = load_model(args.model, num_classes=args.num_classes, weights=args.weights)
    return convert(model, args.input_size, ConvertConfig(space=space_from_args(args)))


def space_from_args(args: argparse.Namespace) -> SpaceConfig:
    return SpaceConfig(ratios=parse_ratios(args.ratios), divisor=args.divisor, max_ratio=args.max_ratio,
                       conv_groups=args.conv_groups, depth=getattr(args, "depth", False),
                       kernel_sizes=parse_kernels(getattr(args, "kernel_sizes", "")))


def parse_kernels(text: str) -> tuple[int, ...]:
    """``--kernel-sizes 3,5,7`` as a tuple of ints (empty: fixed kernels)."""
    try:
        return tuple(int(k) for k in str(text or "").split(",") if k.strip())
    except ValueError:
        raise SlimnasError(f"--kernel-sizes takes odd integers separated by commas (e.g. 3,5,7), got {text!r}") from None


def add_tensorrt_arguments(p: argparse.ArgumentParser, help_on: str) -> None:
    """``--tensorrt`` (True), ``--no-tensorrt`` (False), neither (None: where TensorRT and a GPU are present)."""
    trt = p.add_mutually_exclusive_group()
    trt.add_argument("--tensorrt", action="store_true", default=None, help=help_on)
    trt.add_argument("--no-tensorrt", dest="tensorrt", action="store_false", help="never build model.engine")


def parse_target(text: str) -> dict:
    """``NAME:KEY=VALUE,KEY=VALUE`` (``--target int8_t1:dtype=int8,threads=1``) as ``{NAME: {KEY: VALUE}}``, each
    value read as YAML; the keys are those of ``latency.targets.NAME`` (checked with the rest of the config)."""
    import yaml

    name, sep, rest = text.partition(":")
    pairs = [p for p in rest.split(",") if p.strip()] if sep else []
    if not name.strip() or not sep or any("=" not in p for p in pairs):
        raise SlimnasError(f"--target takes NAME:KEY=VALUE[,KEY=VALUE...] (e.g. int8_t1:dtype=int8,threads=1), got {text!r}")
    settings = {}
    for p in pairs:
        k, _, v = p.partition("=")
        try:
            settings[k.strip()] = yaml.safe_load(v) if v.strip() else None
        except yaml.YAMLError:
            settings[k.strip()] = v
    return {name.strip(): settings}


def target_configs(texts: Sequence[str]) -> dict:
    """The ``--target`` flags (:func:`parse_target`) as ``{NAME: TargetConfig}``, each checked as the YAML config's
    ``latency.targets.NAME`` is (a NAME given twice: the later keys win, as in ``slimnas slim``)."""
    from ..pipeline.config import TargetConfig
    from ..pipeline.schema import build

    settings: dict[str, dict] = {}
    for text in texts:
        for name, keys in parse_target(text).items():
            settings[name] = {**settings.get(name, {}), **keys}
    return {name: build(TargetConfig, keys, f"--target {name}", prefix=f"latency.targets.{name}.")
            for name, keys in settings.items()}
