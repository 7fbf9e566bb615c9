"""slimnas's messages go to the standard ``logging`` module, under the ``slimnas`` logger.

A library user sees them by configuring logging as usual (``logging.basicConfig(level=logging.INFO)``); the
command line attaches :func:`cli_logging`'s handler for the duration of one command, so that ``slimnas slim``
prints its progress as plain lines and a later command in the same process (tests) starts clean.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator, Optional

logger = logging.getLogger("slimnas")


class PlainFormatter(logging.Formatter):
    """The message alone; a warning or error starts with ``warning:`` / ``error:``."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING and not message.startswith(("warning:", "error:")):
            message = f"{'warning' if record.levelno < logging.ERROR else 'error'}: {message}"
        return message


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
    handler.setFormatter(PlainFormatter())
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


class RunLogHandler(logging.Handler):
    """Appends each record, timestamped, to a run's log file once the run folder exists (:meth:`attach`);
    records from before (the checks') are written when it appears."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(PlainFormatter())
        self.path: Optional[Path] = None
        self.pending: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record.created))} {self.format(record)}\n"
        if self.path is None:
            self.pending.append(line)
            return
        with open(self.path, "a") as f:
            f.write(line)

    def attach(self, path: Path) -> None:
        self.path = Path(path)
        with open(self.path, "a") as f:
            f.writelines(self.pending)
        self.pending = []


@contextlib.contextmanager
def run_log() -> Iterator[RunLogHandler]:
    """Collect the ``slimnas`` logger's records of one run (at least INFO) for its log file; restore after."""
    handler = RunLogHandler()
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


class _Callback(logging.Handler):
    def __init__(self, callback) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(PlainFormatter())
        self.callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        self.callback(self.format(record))


@contextlib.contextmanager
def forward_to(callback) -> Iterator[None]:
    """Hand each ``slimnas`` record (INFO and up) to ``callback(line)`` while the block runs (a script's own
    log, say); restore the logger after."""
    handler = _Callback(callback)
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
