"""Headline benchmark: slimnas vs uniform width, Torch-Pruning and Model-Optimizer FastNAS at equal measured latency.

Every method slims the CIFAR-10 MobileNetV2 base to 0.5x and 0.7x of the base's measured end-to-end latency
(onnxruntime CPU, batch 1, one thread, timed in a fresh process with the reference probe), gets the same
fine-tune, and is scored on the CIFAR-10 test split. The slimnas arms (sandwich, cafenet, bsnas) train a
supernet on latency-sensitive bins and let `slimnas.pipeline.slim` search and verify. All final models are
timed again together with the base in one interleaved run, and every budget is checked by that measurement.
Finished stages are cached in the work folder: rerun the same command to resume, or to add methods.

    flock /tmp/slimnas-cpu.lock env PYTHONPATH=. python benchmarks/headline.py --smoke --methods uniform,torch-pruning,fastnas
    PYTHONPATH=. python benchmarks/headline.py --quick          # this 2-core CPU, < 2.5 h (run it in the background)
    PYTHONPATH=. python benchmarks/headline.py --full           # a GPU machine
    PYTHONPATH=. python benchmarks/headline.py --quick --finetune 4x100 --distill off   # same searches, other fine-tune
    PYTHONPATH=. python benchmarks/headline.py --quick --seeds 0,1,2 --methods uniform,fastnas,slimnas-bsnas   # mean ± sd
    PYTHONPATH=. python benchmarks/headline.py --quick --seeds 1 --methods slimnas-bsnas   # one seed, then all: resumes
    PYTHONPATH=. python benchmarks/headline.py --quick --budgets 0.5 --work runs/headline/ablation \
        --out benchmarks/results/headline/ablation --methods slimnas-bsnas,slimnas-bsnas:supernet_teacher=none   # an ablation
    PYTHONPATH=. python benchmarks/headline.py --quick --budgets 0.5,0.3 --int8 \
        --methods "fastnas@0.5,fastnas+int8@0.3,slimnas-bsnas@0.5,slimnas-bsnas+int8"   # INT8 rows (issue 15)
    PYTHONPATH=. python benchmarks/headline.py --quick --seeds 0,1,2 --retime --closing-processes 40 \
        --state-wait 60 --methods ...   # retime the closing run, waiting up to an hour for the budgets' machine state

Needs the bench extra for the peers: pip install -e ".[bench]".
"""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from headline_lib.measure import StateGate  # noqa: E402
from headline_lib.methods import METHODS, PEERS, SLIMNAS_ARMS  # noqa: E402
from headline_lib.profiles import get_profile  # noqa: E402
from headline_lib.runner import Run, RunOptions  # noqa: E402

SHARED_WEIGHTS = HERE.parents[1] / "shared" / "checkpoints" / "cifar10_mobilenet_v2.pth"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="examples:\n" + __doc__.split("\n\n")[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--smoke", action="store_true", help="minutes: tiny subsets, to check the plumbing")
    size.add_argument("--quick", action="store_true", help="this 2-core CPU, under 2.5 hours")
    size.add_argument("--full", action="store_true", help="a GPU machine (full training set, longer fine-tunes)")
    p.add_argument("--methods", default=",".join(PEERS + SLIMNAS_ARMS), help=f"comma-separated, from {', '.join(METHODS)}; "
                   "an arm variant ARM:KEY=VALUE[:KEY=VALUE] changes fields of the profile's arm settings (SlimnasArmConfig in "
                   "headline_lib/profiles.py, e.g. slimnas-bsnas:supernet_teacher=none:verify_margin_se=0) and runs beside the arm; "
                   "METHOD@0.3/0.5 runs that method at those of the budgets only")
    p.add_argument("--int8", action="store_true", help="also the base and every FP32 model quantized after its fine-tune "
                   "(onnxruntime static QDQ, slimnas's settings; METHOD→int8 rows), scored and timed as INT8 graphs. A method "
                   "named METHOD+int8 (e.g. fastnas+int8, slimnas-bsnas+int8) searches under its candidates' INT8 latency "
                   "(budgets stay fractions of the FP32 base) and is reported as its INT8 graph, with or without --int8")
    p.add_argument("--int8-calibration", type=int, default=256, metavar="N",
                   help="training images the INT8 graphs are calibrated on (default 256)")
    p.add_argument("--budgets", help="comma-separated fractions of the base's measured latency (default: the profile's, 0.5,0.7)")
    p.add_argument("--weights", type=Path, default=SHARED_WEIGHTS, help="base checkpoint (state_dict of mobilenet_v2(num_classes=10))")
    p.add_argument("--train-base", action="store_true", help="train the base with tools/train_base.py instead (recipe recorded)")
    p.add_argument("--out", type=Path, help="results folder (default benchmarks/results/headline/PROFILE)")
    p.add_argument("--work", type=Path, help="cache folder for checkpoints and ONNX files (default runs/headline/PROFILE)")
    p.add_argument("--finetune", metavar="EPOCHSxSTEPS", help="replace the profile's fine-tune length, e.g. 4x300 "
                   "(cached searches are reused; results go to PROFILE-ftEPOCHSxSTEPS[-kd] unless --out is given)")
    p.add_argument("--distill", choices=("on", "off"), help="fine-tune with or without distillation from the base "
                   "(the same for every method; default: the profile's)")
    p.add_argument("--device", help="training device (default: cuda when available)")
    p.add_argument("--retime", action="store_true", help="redo the closing timing run even if nothing changed")
    p.add_argument("--closing-processes", type=int, metavar="N",
                   help="fresh processes of the closing timing run (default: the profile's, 5 for --quick); more narrows "
                   "each model's ratio to the base (its s.e. falls as 1/sqrt(N)) and retimes a cached run made with other settings")
    p.add_argument("--state-tol", type=float, default=1.0, metavar="PCT",
                   help="the closing run decides budget shares only with the base at most PCT%% slower than when the "
                   "budgets were set (default 1; slower states raise every model's ratio to the base); 0 turns the gate off")
    p.add_argument("--state-wait", type=float, metavar="MIN",
                   help="minutes the closing run may wait for that state, probing it every 2 minutes with a short closing run "
                   "(default 30; 0 with --smoke); it then runs anyway and results.md says the shares are not decided")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2: each fine-tunes every method again "
                   "and re-runs the seeded searches (the slimnas arms); the report gives mean ± sd over them. Seeds may run "
                   "as separate invocations on the same work folder; the last one, with every seed, writes the report "
                   "(default 0; with --seeds, results go to PROFILE-seeds0-1-2 or PROFILE-seeds1 unless --out is given, never "
                   "to the single-seed PROFILE folder)")
    args = p.parse_args(argv)
    name = "smoke" if args.smoke else "quick" if args.quick else "full"
    argv = sys.argv[1:] if argv is None else list(argv)
    from slimnas.errors import SlimnasError

    try:
        seeds = parse_seeds("0" if args.seeds is None else args.seeds)
        profile = get_profile(name, finetune=args.finetune, distill=None if args.distill is None else args.distill == "on",
                              budgets=args.budgets)
        if args.closing_processes is not None:
            if args.closing_processes < 1:
                raise SlimnasError(f"--closing-processes {args.closing_processes}: give a positive number of processes, e.g. 20")
            profile = replace(profile, final_timing=replace(profile.final_timing, processes=args.closing_processes))
        if args.state_tol < 0 or (args.state_wait is not None and args.state_wait < 0):
            raise SlimnasError(f"--state-tol {args.state_tol:g} / --state-wait {args.state_wait}: give numbers >= 0, "
                               "e.g. --state-tol 1 --state-wait 30 (--state-tol 0 turns the gate off)")
        wait_min = args.state_wait if args.state_wait is not None else 0.0 if name == "smoke" else 30.0
        gate = StateGate(tol_pct=args.state_tol, wait_s=60 * wait_min)
        results = name if args.finetune is None and args.distill is None else f"{name}-{profile.finetune_label().rsplit('-', 1)[0]}"
        if args.budgets is not None:
            results += "-budgets" + "-".join(f"{b:g}" for b in profile.budgets)
        if args.seeds is not None:
            results += "-seeds" + "-".join(map(str, seeds))
        methods, method_budgets = parse_methods(args.methods)
        opts = RunOptions(profile=profile, out=args.out or HERE / "results" / "headline" / results,
                          work=args.work or HERE.parent / "runs" / "headline" / name,
                          methods=methods, method_budgets=method_budgets or None, int8=args.int8,
                          int8_calibration=args.int8_calibration, weights=args.weights,
                          train_base=args.train_base, device=args.device, retime=args.retime, seeds=seeds, state_gate=gate,
                          command="python benchmarks/headline.py " + " ".join(shlex.quote(a) for a in argv))
        Run(opts).run()
    except SlimnasError as exc:
        print(f"headline: error: {exc}", file=sys.stderr)
        return 2
    return 0


def parse_methods(text: str) -> tuple[tuple[str, ...], dict]:
    """``"fastnas@0.5,slimnas-bsnas+int8"`` -> (("fastnas", "slimnas-bsnas+int8"), {"fastnas": (0.5,)})."""
    from slimnas.errors import SlimnasError

    names, only = [], {}
    for item in (t.strip() for t in text.split(",") if t.strip()):
        name, sep, budgets = item.partition("@")
        if sep:
            try:
                fractions = tuple(float(b) for b in budgets.split("/") if b.strip())
            except ValueError:
                fractions = ()
            if not fractions:
                raise SlimnasError(f"--methods {item!r}: write METHOD@FRACTION[/FRACTION], e.g. fastnas@0.5/0.7")
            only[name] = fractions
        names.append(name)
    return tuple(names), only


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> (0, 1, 2): distinct integers >= 0, in the order given."""
    from slimnas.errors import SlimnasError

    try:
        seeds = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        seeds = ()
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise SlimnasError(f"--seeds {text!r}: give distinct integers >= 0 separated by commas, e.g. 0,1,2")
    return seeds


if __name__ == "__main__":
    sys.exit(main())
