"""slimnas's messages go to the standard ``logging`` module, under the ``slimnas`` logger.

A library user sees them by configuring logging as usual (``logging.basicConfig(level=logging.INFO)``); the
command line attaches :func:`cli_logging`'s handler for the duration of one command, so that ``slimnas slim``
prints its progress as plain lines and a later command in the same process (tests) starts clean.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from typing import Iterator

logger = logging.getLogger("slimnas")


class _CurrentStdout(logging.StreamHandler):
    """A handler writing to whatever ``sys.stdout`` is when a record is emitted (pytest swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


@contextlib.contextmanager
def cli_logging(level: int = logging.INFO) -> Iterator[logging.Handler]:
    """Print ``slimnas`` log records as plain lines on stdout while the block runs; restore the logger after.

    Python warnings raised meanwhile (a table used on another kernel build, say) become one ``warning:`` line
    each, instead of the interpreter's two lines naming a source file."""
    handler = _CurrentStdout()
    handler.setFormatter(logging.Formatter("%(message)s"))
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # the CLI prints each line once, even where the root logger has a handler too
    old_show = warnings.showwarning
    warnings.showwarning = lambda message, category, *args, **kwargs: logger.warning(f"warning: {message}")
    try:
        yield handler
    finally:
        warnings.showwarning = old_show
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
