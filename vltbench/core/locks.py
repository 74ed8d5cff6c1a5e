"""One lock scheme for the whole package: `flock` on a lock file.

The OS releases an flock when its holder exits, however it exits (kill -9, OOM, a Slurm task
killed on one node), so no lock ever goes stale and nothing has to judge whether a recorded pid or
host is still alive: a lock file left behind by a dead holder, on this host or another, is simply
free. On a network file system the server releases the lock of a node that died when the node's
lease ends (NFSv4: about 90 s).

The holder removes the lock file before releasing it. A process that opened the file just before
the removal and then gets the lock finds that the path no longer names its file, and tries again
on the new one, so two processes never both believe they hold one lock. The file's content (the
holder's pid and host) is only for people; it is never read back.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

# Paths locked by this process: flock conflicts between two opens of one file in one process on a
# local file system, but not where it is emulated by POSIX locks (NFS), so ask this set first.
_HELD: set[str] = set()
_GUARD = threading.Lock()
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_warned: set[str] = set()


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # a lock file of another user (e.g. left by an older vltbench): lock it read-only
        return os.open(path, os.O_RDONLY)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _note_holder(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    except OSError:
        pass  # read-only or full: the note is for people only


@contextmanager
def hold(path: str | Path, *, wait: bool = False, on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
    """Hold the lock `path` (created if missing; its folder must exist).

    Yields True when this process holds it; with wait=False, False at once when another holder
    (another process, or this one) has it. With wait=True it waits, calling `on_wait()` once first,
    and always yields True. Released (and the file removed) on exit, and by the OS if the process dies."""
    path = Path(path)
    key = os.path.abspath(path)
    with _GUARD:
        mine_already = key in _HELD
    if mine_already and not wait:
        yield False
        return
    fd = _acquire(path, key, wait, on_wait)
    if fd is None:
        yield False
        return
    try:
        yield True
    finally:
        _release(path, key, fd)


def _acquire(path: Path, key: str, wait: bool, on_wait: Callable[[], None] | None) -> int | None:
    told = False
    while True:
        fd = _open(path)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    os.close(fd)
                    return None
                if not told and on_wait is not None:
                    on_wait()
                told = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if not _same_file(fd, path):  # its holder removed it as we opened it: lock the new file
                os.close(fd)
                continue
        except OSError as e:
            os.close(fd)
            if e.errno not in _UNSUPPORTED:
                raise
            if str(path.parent) not in _warned:
                _warned.add(str(path.parent))
                warnings.warn(f"the file system of {path.parent} does not support locks ({e.strerror}); "
                              "concurrent runs sharing it are not coordinated", stacklevel=4)
            fd = -1  # proceed unlocked: held as far as this process can tell
        with _GUARD:
            if key in _HELD and fd >= 0:  # another thread of this process took it meanwhile
                os.close(fd)
                return None
            _HELD.add(key)
        if fd >= 0:
            _note_holder(fd)
        return fd


def _release(path: Path, key: str, fd: int) -> None:
    with _GUARD:
        _HELD.discard(key)
    if fd < 0:
        return
    try:
        if _same_file(fd, path):
            path.unlink(missing_ok=True)  # before unlocking: a waiter then sees the file is gone and retries
    finally:
        os.close(fd)  # releases the flock


def remove_if_free(path: str | Path) -> bool:
    """Remove the file `path` if no live process holds an flock on it: a lock file whose holder died or
    released it, or a temp file or write probe of a killed writer (vltbench.core.atomic and the store hold an
    flock on theirs while they exist). Taken and checked like a lock, so a file somebody holds, or
    one replaced meanwhile, is never removed. True when removed."""
    path = Path(path)
    if os.path.abspath(path) in _HELD:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:  # gone already, a folder, a link, not ours to read
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as e:
            if e.errno in _UNSUPPORTED:  # no locks here: nobody could tell a live file from a dead one
                return False
            raise
        if not _same_file(fd, path):
            return False
        try:
            path.unlink()
        except OSError:
            return False
        return True
    finally:
        os.close(fd)


def is_held(path: str | Path) -> bool:
    """Whether some live process holds the lock `path` (a probe that takes it for an instant: use it
    only where no real claimant can be refused by the probe, e.g. in tests after the runs ended)."""
    path = Path(path)
    if os.path.abspath(path) in _HELD:
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
