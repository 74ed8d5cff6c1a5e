"""Atomic file writes: a reader sees the old file or the whole new one, never a half-written one.

A temp file (`.<name>.<random>.tmp`, beside its target) carries an flock while its writer lives, so
the next run that finds one nobody holds knows its writer died (kill -9, a lost node) and removes it
(remove_leftovers); a live writer's temp file is never touched.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from . import locks

PROBE_PREFIX = ".write-probe-"  # ResultStore's write probes (vltbench.evaluation.store)


def _locked_temp(folder: Path, name: str) -> tuple[int, str]:
    """A new temp file in `folder` and an fd holding its flock (-1 where locks are unsupported)."""
    while True:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # a cleaner holds it for an instant at most
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise
            return fd, tmp
        if locks._same_file(fd, Path(tmp)):
            return fd, tmp
        os.close(fd)  # a cleaner took it for a dead writer's between mkstemp and flock: make another


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path in the same folder; on success fsync and rename it onto `path`.

    On any error the temp file is removed and `path` keeps its previous content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _locked_temp(path.parent, path.name)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # a failed write() names no file: name the target
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    finally:
        os.close(fd)  # releases the flock


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def is_leftover_name(name: str) -> bool:
    """Names of files a writer removes itself when it ends: temp files, lock files, write probes."""
    return (name.startswith(".") and name.endswith(".tmp")) or name.endswith(".lock") or name.startswith(PROBE_PREFIX)


def remove_leftovers(root: str | Path) -> list[Path]:
    """Remove, under `root`, the temp files, lock files and write probes that no live process holds
    (their writers died); returns what was removed. Held ones (a live writer, a lock holder) stay."""
    removed = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for folder, dirs, files in os.walk(root):
        for name in files:
            if is_leftover_name(name) and locks.remove_if_free(Path(folder) / name):
                removed.append(Path(folder) / name)
    return removed
