"""QEMU's command line (pure)."""

from __future__ import annotations

from pathlib import Path

from stats_log_collector.demo.qemu import VmConfig, command_line, opt_value


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
