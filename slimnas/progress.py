"""Progress on long work: a tqdm bar on a terminal, a plain periodic line in a log.

tqdm redraws its bar with carriage returns; when stderr is a file or a pipe (a run's log, CI, ``nohup``) every
redraw lands in the file, so a search's log held 180 updates on one line. :class:`Progress` uses tqdm only when
stderr is a terminal and otherwise writes one readable line to the ``slimnas`` logger every ``every_s``
seconds, and a last one when the work ends.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Optional, TextIO

logger = logging.getLogger("slimnas.progress")


def _is_terminal(stream: Optional[TextIO]) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


class Progress:
    """``update(n)``, ``set_postfix(**values)``, ``close()``: the part of tqdm's interface slimnas uses."""

    def __init__(self, total: Optional[int], desc: str, unit: str = "it", initial: int = 0, enabled: bool = True,
                 every_s: float = 30.0, stream: Optional[TextIO] = None):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.every_s, self.enabled = every_s, enabled
        self.postfix: dict[str, str] = {}
        self._start_n, self._start = initial, time.monotonic()
        self._last = self._start
        self._closed = False
        self.bar = None
        stream = sys.stderr if stream is None else stream
        if enabled and _is_terminal(stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=False,
                            file=stream)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.monotonic() - self._last >= self.every_s:
            self._line()

    def set_postfix(self, **values) -> None:
        self.postfix = {k: str(v) for k, v in values.items()}
        if self.bar is not None:
            self.bar.set_postfix(values)

    def line(self) -> str:
        """The plain progress line: ``search: 120/180 subnet (67%), 2.1 subnet/s, 29 s left, loss=0.3``."""
        elapsed = max(1e-9, time.monotonic() - self._start)
        rate = (self.n - self._start_n) / elapsed
        done = f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"
        parts = [f"{self.desc}: {done}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:.3g} {self.unit}/s")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"{(self.total - self.n) / rate:.0f} s left")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        return ", ".join(parts)

    def _line(self) -> None:
        self._last = time.monotonic()
        logger.info(self.line())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.n > self._start_n:
            self._line()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
