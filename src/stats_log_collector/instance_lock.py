"""One writer per state: a component holds an exclusive lock on its state before it touches it.

Two virtlet-logs on one STATE_DIR write every line twice; a second memstat on one DATA_DIR rotates the
CSV under the first. So each component takes an exclusive ``flock`` on a lock file in its state folder
as the first thing it does, and a second instance stops at once (exit code 2, one line naming the path)
having touched nothing.

Why ``flock``: the kernel releases it when the process ends, however it ends (``kill -9`` included), so
a crashed instance never leaves a stale lock behind for an operator to judge; no PID file is trusted.
The holder's PID is written into the file for the error message only.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["InstanceLock", "InstanceLocked"]


class InstanceLocked(Exception):
    """The state is held by another instance, or its lock file cannot be used; the message names both."""


class InstanceLock:
    """An exclusive, non-blocking ``flock`` on ``path``, held until :meth:`release` or the process ends."""

    def __init__(self, path: Path, setting: str, state: Path | None = None) -> None:
        self.path = path
        self._setting = setting  # the variable that names the state, for the error message
        self._state = path.parent if state is None else state  # what is in use: a folder or a file
        self._fd: int | None = None

    def acquire(self) -> Self:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            why = "is a symbolic link" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
            raise InstanceLocked(f"{self._setting}: cannot use the lock file {self.path}: {why}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                by = f"another instance (pid {holder})" if holder else "another instance"
                raise InstanceLocked(f"{self._setting}: {self._state} is in use by {by}") from exc
            raise InstanceLocked(f"{self._setting}: cannot lock {self.path}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""
