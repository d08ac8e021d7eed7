"""Running a VM under QEMU: the command line (pure) and the process (start, find, stop).

The console is a QEMU ``file`` chardev opened with ``append=on``: this is how Virtlet's libvirt wrote a
raw console log, and a VM booted again continues the same file instead of truncating what a logger is
reading. ``-name guest=<vm>`` is what memstat's procfs source names the VM from.

``/dev/kvm`` does not work on every host (it hangs in some containers), so the accelerator is TCG, plain
emulation: slower, but it boots the same kernel everywhere.

QEMU runs in its own session: Ctrl-C in a terminal reaches the demo, which stops the VMs in order,
instead of killing them under the loggers. Its ``-pidfile`` lets a later run find a VM left behind by a
run that was killed with -9.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

QEMU_BINARY = "qemu-system-x86_64"
KERNEL_CONSOLE_ARGS = "console=ttyS0 panic=-1 quiet"


@dataclasses.dataclass(frozen=True)
class VmConfig:
    name: str
    memory_mib: int
    kernel: Path
    initrd: Path
    console_log: Path  # the raw serial console, appended to
    pidfile: Path
    kernel_args: str = ""  # appended after KERNEL_CONSOLE_ARGS
    accel: str = "tcg"
    binary: str = QEMU_BINARY


def opt_value(text: str) -> str:
    """A value inside a QEMU ``key=value,...`` option: commas are doubled to stay part of the value."""
    return text.replace(",", ",,")


def command_line(config: VmConfig) -> list[str]:
    """QEMU's argv: one CPU, no devices but the serial console, direct kernel boot, exit on guest panic."""
    append = f"{KERNEL_CONSOLE_ARGS} {config.kernel_args}".strip()
    return [
        config.binary,
        "-accel", config.accel,
        "-m", str(config.memory_mib),
        "-smp", "1",
        "-name", f"guest={opt_value(config.name)},debug-threads=on",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-pidfile", str(config.pidfile),
        "-chardev", f"file,id=console,path={opt_value(str(config.console_log))},append=on",
        "-serial", "chardev:console",
        "-kernel", str(config.kernel),
        "-initrd", str(config.initrd),
        "-append", append,
    ]  # fmt: skip


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


class QemuVm:
    """One QEMU process, a child of ours."""

    def __init__(self, config: VmConfig, stderr_log: Path) -> None:
        self.config = config
        self.stderr_log = stderr_log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def argv(self) -> Sequence[str]:
        return command_line(self.config)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        stop_stale(self.config.pidfile, str(self.config.pidfile))
        self.config.console_log.parent.mkdir(parents=True, exist_ok=True)
        self.config.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.stderr_log.parent.mkdir(parents=True, exist_ok=True)
        with self.stderr_log.open("ab") as stderr:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True
            )

    def exit_code(self) -> int | None:
        """None while running."""
        return self.process.poll() if self.process is not None else None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (QEMU exits at once), SIGKILL if it has not after ``timeout``."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.config.pidfile.unlink()
