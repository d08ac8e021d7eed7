"""QEMU's command line (pure) and finding a VM left by an earlier run through its pidfile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from stats_log_collector.demo.qemu import VmConfig, command_line, opt_value, process_argv, stop_stale
from tests.memstat.conftest import wait_for


def config(tmp_path: Path, **overrides: object) -> VmConfig:
    values: dict[str, object] = {
        "name": "vm1",
        "memory_mib": 144,
        "kernel": tmp_path / "vmlinuz",
        "initrd": tmp_path / "initrd.gz",
        "console_log": tmp_path / "vms" / "uid" / "vm1_0.log",
        "pidfile": tmp_path / "run" / "qemu-vm1.pid",
        "kernel_args": "VM=vm1 PERIOD=1",
    }
    values.update(overrides)
    return VmConfig(**values)  # type: ignore[arg-type]


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_command_line(tmp_path: Path) -> None:
    argv = command_line(config(tmp_path))
    assert argv[0] == "qemu-system-x86_64"
    assert option(argv, "-accel") == "tcg"
    assert option(argv, "-m") == "144"
    assert option(argv, "-name") == "guest=vm1,debug-threads=on"  # what memstat names the VM from
    assert option(argv, "-chardev") == f"file,id=console,path={tmp_path}/vms/uid/vm1_0.log,append=on"
    assert option(argv, "-serial") == "chardev:console"
    assert option(argv, "-pidfile") == str(tmp_path / "run" / "qemu-vm1.pid")
    assert option(argv, "-append") == "console=ttyS0 panic=-1 quiet VM=vm1 PERIOD=1"
    assert "-no-reboot" in argv and "-nodefaults" in argv  # a guest that panics ends the process


def test_commas_in_values_are_doubled(tmp_path: Path) -> None:
    argv = command_line(config(tmp_path, name="a,b", console_log=Path("/x,y/c.log")))
    assert option(argv, "-name") == "guest=a,,b,debug-threads=on"
    assert option(argv, "-chardev") == "file,id=console,path=/x,,y/c.log,append=on"
    assert opt_value("no-comma") == "no-comma"


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
