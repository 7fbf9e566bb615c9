"""The ``slimnas`` command line: a thin shell over the library's verbs.

Each verb is a module in this package that registers itself with :func:`command`; adding one is one file plus
one decorator. A :class:`~slimnas.errors.SlimnasError` becomes one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from ..errors import SlimnasError
from ..log import cli_logging


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    examples: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Optional[int]]


COMMANDS: dict[str, Command] = {}
_VERBS = ("inspect", "profile", "latency", "bins", "train", "rank", "search", "export", "slim", "demo")


def command(name: str, help: str, examples: str):
    """Decorator for ``run(args)``; the decorated function gets ``.arguments`` to declare its options."""

    def deco(run):
        def arguments(add):
            COMMANDS[name] = Command(name, help, examples, add, run)
            return add

        run.arguments = arguments
        return run

    return deco


def _close_distributed() -> None:
    """A command that trained under ``torchrun`` leaves no process group behind (see ``close_distributed``)."""
    dist = sys.modules.get("slimnas.train.distributed")  # imported only by the verbs that train
    if dist is not None:
        dist.close_distributed()


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser of every verb, or of ``only`` that one: a verb's module imports what its work needs (torch,
    pandas, onnx, scipy...), and a command runs one verb, so it need not pay for the imports of the others."""
    for verb in (only,) if only in _VERBS else _VERBS:
        importlib.import_module(f".{verb}", __name__)
    parser = argparse.ArgumentParser(
        prog="slimnas",
        description="Slim a trained CNN to a latency budget on a specific device.",
        epilog="Run `slimnas COMMAND --help` for a command's options and examples.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in (c for c in COMMANDS.values() if only not in _VERBS or c.name == only):
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help,
                           epilog="examples:\n" + cmd.examples, formatter_class=argparse.RawDescriptionHelpFormatter)
        cmd.add_arguments(p)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    typed = list(argv) if argv is not None else sys.argv[1:]  # the command as typed, for run folders' reports
    # the verb is the first word (no option comes before it); none or an unknown one: every verb, for help or the error
    parser = build_parser(only=typed[0] if typed else None)
    args = parser.parse_args(typed)
    args.argv = typed
    try:
        with cli_logging():
            if hasattr(args, "model_flag"):  # the verbs taking a model: positionally or with --model
                from .common import resolve_model

                resolve_model(args)
            rc = COMMANDS[args.command].run(args) or 0
        _close_distributed()
        return rc
    except SlimnasError as exc:
        print(f"slimnas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"slimnas {args.command}: interrupted", file=sys.stderr)
        return 130
