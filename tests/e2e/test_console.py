"""A real VM's serial console reaches kubelet's log files: every line once, in order, through kill -9.

Two more virtlet-log processes read the demo's raw consoles, one writing CRI and one docker JSON, and are
killed with SIGKILL and restarted again and again while the guests print; their files are then read with
the kubelet-grammar checker and must be exactly the consoles.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stats_log_collector.demo.children import Child, child_environment
from tests.e2e.conftest import BOOT_TIMEOUT, RunningDemo, assert_console_exact, last_seq
from tests.helpers import wait_for
from tests.kubelet_logs import LogFormat, read_log_file, rebuild

FORMATS: tuple[LogFormat, ...] = ("cri", "json")
KILLS = 3

pytestmark = pytest.mark.e2e


def logger(demo: RunningDemo, root: Path, fmt: LogFormat) -> Child:
    args = [
        "--virtlet-vm-log-location", str(demo.layout.vms), "--kubernetes-pod-logs", str(root / f"pods-{fmt}"),
        "--state-dir", str(root / f"state-{fmt}"), "--log-format", fmt, "--create-pod-log-dirs", "true",
    ]  # fmt: skip
    env = child_environment({"SLEEP_SECONDS": "3600"})  # inotify only: the rescan would hide a miss
    return Child("virtlet-log", args, env, root / f"virtlet-log-{fmt}.log", root / f"{fmt}.pid", str(root))


def output_of(root: Path, fmt: LogFormat, demo: RunningDemo, vm: str) -> Path:
    """CREATE_POD_LOG_DIRS makes Virtlet's legacy layout: <pods>/<sandbox>/<vm>_0.log."""
    return root / f"pods-{fmt}" / demo.layout.sandbox(vm) / f"{vm}_0.log"


def output_seq(path: Path, vm: str) -> int:
    if not path.exists():
        return 0
    data = path.read_bytes()
    return last_seq(rebuild(read_log_file(data[: data.rfind(b"\n") + 1])), vm)


def wait_for_seq(path: Path, vm: str, target: int) -> None:
    wait_for(lambda: output_seq(path, vm) >= target, f"line {target} of {vm} in {path.name}", BOOT_TIMEOUT)


def test_every_console_line_once_in_order_through_kill_9(demo: RunningDemo, tmp_path: Path) -> None:
    loggers = {fmt: logger(demo, tmp_path, fmt) for fmt in FORMATS}
    fastest = demo.names[0]  # prints every 0.5 s
    raw = demo.layout.console_log(fastest)
    try:
        for child in loggers.values():
            child.start()
        for _ in range(KILLS):
            target = last_seq(raw.read_bytes(), fastest) + 2  # lines the guest has not printed yet
            for fmt, child in loggers.items():
                out = output_of(tmp_path, fmt, demo, fastest)
                wait_for_seq(out, fastest, target)
                child.kill()  # SIGKILL: no checkpoint flushed, no goodbye
                child.start()
        target = last_seq(raw.read_bytes(), fastest) + 3
        for fmt in FORMATS:
            out = output_of(tmp_path, fmt, demo, fastest)
            wait_for_seq(out, fastest, target)
    finally:
        for child in loggers.values():
            child.stop()
    for fmt in FORMATS:
        for vm in demo.names:
            seqs = assert_console_exact(
                output_of(tmp_path, fmt, demo, vm), demo.layout.console_log(vm), fmt, vm
            )
            assert len(seqs) >= 2
        own_log = (tmp_path / f"virtlet-log-{fmt}.log").read_text()
        assert " ERROR " not in own_log and " WARNING " not in own_log, own_log
    assert os.path.getsize(output_of(tmp_path, "cri", demo, fastest)) > 0
