"""Files that a later run reads are written whole or not at all, and a full disk is one clear error naming the file.

Every such file (a training checkpoint, a cached split, a stage's record and outputs, the synthetic benchmark) is
written to a temporary name beside its target and moved onto it with ``os.replace`` once complete and flushed to
disk. A process killed mid-write leaves at most a temporary file, which no reader opens; a reader sees the old file
or the new one, never half of one. Each writer uses its own temporary name (pid and a random suffix), so two
processes or DDP ranks writing the same file never collide, and the last complete write wins.

A full disk surfaces from deep inside a library in many forms; ``torch.save`` to a path reports it as
``RuntimeError: unexpected pos ...``. The writers here hand ``torch.save`` a Python file object instead, so the
operating system's ``OSError(ENOSPC)`` comes through, and :func:`is_disk_full` recognises it (also in an
exception's chain) to raise :class:`DiskFull`: one line with the path and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from bench.data.errors import DataError

_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(DataError):
    """No space left while writing ``where``; nothing half-written was kept."""

    def __init__(self, where: str | Path) -> None:
        folder = Path(where).parent
        super().__init__(
            where,
            "no space left on the device while writing it (nothing half-written was kept)",
            f"free space on that disk (`df -h {folder}`) or point WSVG_HOME at a disk with room, then run the "
            "command again",
        )


def _chain(err: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def is_disk_full(err: BaseException) -> bool:
    """True when ``err``, or an exception it was raised from, is the operating system's "no space left"."""
    for e in _chain(err):
        if isinstance(e, DiskFull) or (isinstance(e, OSError) and e.errno in _FULL):
            return True
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return True
    return False


def temporary_name(path: Path) -> Path:
    """A hidden name beside ``path``, unique to this writer: ``.<name>.<pid>.<random>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """``write(file)`` into a temporary file beside ``path``, then ``fsync`` and ``os.replace`` it onto ``path``.

    Any failure removes the temporary file and leaves ``path`` as it was; a full disk raises :class:`DiskFull`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except Exception as err:
        if is_disk_full(err):
            raise DiskFull(path) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` through :func:`write_atomic`."""
    import torch

    write_atomic(path, lambda fh: torch.save(obj, fh))


# What a process does while it waits for another process's lock: nothing, unless ``bench run --jobs N`` made it a
# worker, which gives its CPU slot to a spare worker meanwhile (``bench.run``; set with :func:`while_waiting`).
_while_waiting: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext


def while_waiting(hook: Callable[[], contextlib.AbstractContextManager[Any]]) -> None:
    """Wrap every blocking wait of :func:`exclusive` in this process in ``hook()``."""
    global _while_waiting
    _while_waiting = hook


@contextlib.contextmanager
def exclusive(lock: Path, waiting: str) -> Iterator[None]:
    """Hold the file lock ``lock`` (``flock``: released when the file closes, also when the process dies), so that
    two processes that would build one file build it once; one that waits prints ``waiting`` once on stderr."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(waiting, file=sys.stderr, flush=True)
            with _while_waiting():
                fcntl.flock(fh, fcntl.LOCK_EX)
        yield
