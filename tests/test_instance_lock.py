"""The instance lock with real processes: a second holder is refused, kill -9 frees it, links are refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stats_log_collector.instance_lock import InstanceLock, InstanceLocked

HOLDER = """
import sys, time
from pathlib import Path
from stats_log_collector.instance_lock import InstanceLock
InstanceLock(Path(sys.argv[1]), "STATE_DIR").acquire()
print("held", flush=True)
time.sleep(60)
"""


def hold_in_child(path: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline() == "held\n"
    return child


def test_second_instance_is_refused_with_the_path_and_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / ".virtlet-log.lock"
    child = hold_in_child(lock)
    try:
        with pytest.raises(InstanceLocked) as refused:
            InstanceLock(lock, "STATE_DIR").acquire()
        assert str(refused.value) == f"STATE_DIR: {tmp_path} is in use by another instance (pid {child.pid})"
    finally:
        child.kill()
        child.wait()


def test_kill_9_releases_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    child = hold_in_child(lock)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with InstanceLock(lock, "DATA_DIR"):
        assert lock.read_text() == f"{os.getpid()}\n"
    # released on exit: taken again at once
    InstanceLock(lock, "DATA_DIR").acquire().release()


def test_one_process_cannot_take_it_twice(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    with InstanceLock(lock, "DATA_DIR"), pytest.raises(InstanceLocked, match="is in use by another instance"):
        InstanceLock(lock, "DATA_DIR").acquire()


def test_a_symbolic_link_is_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("keep me\n")
    lock = tmp_path / ".lock"
    lock.symlink_to(target)
    with pytest.raises(InstanceLocked, match=r"^DATA_DIR: cannot use the lock file .*: is a symbolic link$"):
        InstanceLock(lock, "DATA_DIR").acquire()
    assert target.read_text() == "keep me\n"


def test_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(
        InstanceLocked, match=r"^DATA_DIR: cannot use the lock file .*: No such file or directory$"
    ):
        InstanceLock(tmp_path / "gone" / ".lock", "DATA_DIR").acquire()
