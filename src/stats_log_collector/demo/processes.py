"""Processes known by a pidfile: a run of the demo killed with -9 leaves its VMs and components running.

The next run finds them through their pidfiles and stops them, but only a process whose argv still
carries the run's marker (a path of the demo folder): a PID may have been reused by anything since.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)


def read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def process_argv(pid: int) -> list[str] | None:
    """A live process's argv; None if it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw.rstrip(b"\0").decode("utf-8", "replace").split("\0") if raw else None


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; for a process that is not our child (found by pidfile)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_argv(pid) is not None:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + timeout
            time.sleep(0.05)


def stop_stale(pidfile: Path, marker: str) -> int | None:
    """Stop the process a pidfile names if it is still running and its argv contains ``marker``.

    The marker (the pidfile path itself for QEMU) makes sure a recycled PID is never killed.
    """
    pid = read_pidfile(pidfile)
    if pid is None:
        return None
    argv = process_argv(pid)
    if argv is None or not any(marker in arg for arg in argv):
        return None
    log.info("stopping a process left by an earlier run", extra={"pid": pid, "pidfile": str(pidfile)})
    stop_pid(pid)
    return pid
