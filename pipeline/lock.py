"""One writer per output: an exclusive lock on a hidden sibling file `.NAME.lock`, holding its owner's pid and host.

The lock is a `flock` on that file, so the kernel releases it when its owner exits or is killed: a lock left by a
dead process is taken over by the next writer without anyone deleting anything. A second writer waits up to
`wait_s` seconds and then refuses with one line naming the owner. Within one process the lock is re-entrant (a
command that holds it may call a library function that takes it again).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dra_pipeline.errors import DraError

POLL_S = 0.1  # seconds between attempts while another process holds the lock
_held: dict[Path, int] = {}  # lock files this process holds -> nesting depth


def lock_path(path: Path) -> Path:
    """The lock file of an output path: `.NAME.lock` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def owner_of(lock: Path) -> dict:
    """What the lock file records about its owner (pid, host, since); {} when unreadable."""
    try:
        return json.loads(Path(lock).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this machine (signal 0 probes without sending)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists, owned by another user (or an odd pid we must not judge dead)
    return True


@contextmanager
def exclusive(path: str | os.PathLike, *, wait_s: float, what: str = "output") -> Iterator[None]:
    """Hold the lock of `path` (an output that may not exist yet) for the body; wait up to wait_s seconds for it.

    Raises DraError naming the owner (pid, host, since when) when another process still holds it after wait_s.
    """
    path = Path(path)
    lock = lock_path(path).absolute()
    if lock in _held:
        _held[lock] += 1
        try:
            yield
        finally:
            _held[lock] -= 1
        return
    fd = _acquire(path, lock, wait_s, what)
    _held[lock] = 1
    try:
        yield
    finally:
        del _held[lock]
        try:
            lock.unlink(missing_ok=True)  # while still locked: a waiter re-checks the inode and retries
        finally:
            os.close(fd)


def _acquire(path: Path, lock: Path, wait_s: float, what: str) -> int:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)  # the output's folder: it is written next anyway
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise DraError(f"cannot create the lock file {lock} ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                owner = owner_of(lock)
                who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')} since {owner.get('since', '?')}"
                raise DraError(
                    f"{path} is in use by another {what} ({who}); wait for it to finish, then rerun"
                ) from None
            time.sleep(POLL_S)
            continue
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if not same:  # the previous owner removed the file after we opened it: lock the new one instead
            os.close(fd)
            continue
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        return fd
