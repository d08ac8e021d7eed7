"""Finding what a killed run left through its pidfile, and never a process that merely got its PID."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from stats_log_collector.demo.processes import process_argv, stop_stale
from tests.helpers import wait_for


def test_stale_process_is_stopped_only_if_it_is_ours(tmp_path: Path) -> None:
    marker = str(tmp_path / "run" / "qemu-vm1.pid")
    pidfile = tmp_path / "pid"
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        wait_for(lambda: marker in (process_argv(process.pid) or []), "the process's argv")
        pidfile.write_text(f"{process.pid}\n")
        assert stop_stale(pidfile, "some-other-marker") is None  # a recycled PID is left alone
        assert process.poll() is None
        assert stop_stale(pidfile, marker) == process.pid
        assert process.wait(timeout=10) != 0
        assert process_argv(process.pid) is None
    finally:
        process.kill()
        process.wait()


def test_missing_or_garbled_pidfile_is_nothing_to_stop(tmp_path: Path) -> None:
    assert stop_stale(tmp_path / "absent.pid", "x") is None
    (tmp_path / "bad.pid").write_text("not a pid")
    assert stop_stale(tmp_path / "bad.pid", "x") is None
