"""Writing files so that a kill leaves either the old file or the new one, never a torn one, and append-only
logs (one record a line) that a kill can leave with a torn last line.

Readers of a log never write to it: a shipped log may be read-only, and a reader must not cut a line that a
writer is still appending. They ignore a last line without its newline (:func:`read_complete_lines`). Only
the writer repairs: :func:`append_line` cuts a torn tail off before adding its own line.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union


@contextlib.contextmanager
def atomic_path(path: Union[str, Path], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is synced and renamed onto ``path``.

    If the block raises, the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_complete_lines(path: Union[str, Path]) -> str:
    """The text of ``path`` up to its last newline: a last line still being written, or cut short by a kill,
    is left out. The file is only read."""
    data = Path(path).read_bytes()
    return data[: data.rfind(b"\n") + 1].decode()


def _complete_length(f, size: int, block: int = 1 << 16) -> int:
    """Bytes of ``f`` up to and including its last newline (0 if it has none), reading from the end."""
    end = size
    while end > 0:
        start = max(0, end - block)
        f.seek(start)
        i = f.read(end - start).rfind(b"\n")
        if i >= 0:
            return start + i + 1
        end = start
    return 0


def append_line(path: Union[str, Path], text: str, header: str = "") -> None:
    """Append ``text`` (whole lines, ending in a newline) to the log ``path`` and make it durable.

    A torn last line (no newline: a kill cut the previous append short) is cut off first, so the new line
    starts on a line of its own; ``header`` is written first when the file is (then) empty.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        size = f.seek(0, os.SEEK_END)
        keep = _complete_length(f, size) if size else 0
        if keep != size:
            f.truncate(keep)
        f.write(((header if keep == 0 else "") + text).encode())
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: Union[str, Path], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_torch_save(obj: Any, path: Union[str, Path]) -> None:
    import torch  # here, so that the latency table's readers and writers do not import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
