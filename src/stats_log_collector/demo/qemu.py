"""Running a VM under QEMU: the command line (pure) and the process (start, find, stop).

The console is a QEMU ``file`` chardev opened with ``append=on``: this is how Virtlet's libvirt wrote a
raw console log, and a VM booted again continues the same file instead of truncating what a logger is
reading. ``-name guest=<vm>`` is what memstat's procfs source names the VM from.

``/dev/kvm`` does not work on every host (it hangs in some containers), so the accelerator is TCG, plain
emulation: slower, but it boots the same kernel everywhere.

QEMU runs in its own session: Ctrl-C in a terminal reaches the demo, which stops the VMs in order,
instead of killing them under the loggers. Its ``-pidfile`` lets a later run find a VM left behind by a
run that was killed with -9. Where the demo gives it a memory cgroup, it joins it before it becomes QEMU
(``joining``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .processes import stop_stale

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


# The process joins the cgroup before it becomes QEMU: `sh` writes its own PID (`$$`) to cgroup.procs, then
# execs QEMU with the same PID. So every page QEMU touches, from its first, is charged to the VM's cgroup
# (memory already charged does not move with a process: cgroup-v2.rst, "Organize Once and Control"), and
# the PID Popen knows, the pidfile's and /proc's stay one.
_JOIN_THEN_EXEC = 'echo "$$" > "$1" || exit 125; shift; exec "$@"'


def joining(procs_file: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` run as a member of the cgroup whose ``cgroup.procs`` is ``procs_file``."""
    return ["/bin/sh", "-c", _JOIN_THEN_EXEC, "join-cgroup", str(procs_file), *argv]


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

    def start(self, cgroup_procs: Path | None = None) -> None:
        """QEMU, in the cgroup of ``cgroup_procs`` if one is given (see ``joining``)."""
        stop_stale(self.config.pidfile, str(self.config.pidfile))
        self.config.console_log.parent.mkdir(parents=True, exist_ok=True)
        self.config.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.stderr_log.parent.mkdir(parents=True, exist_ok=True)
        with self.stderr_log.open("ab") as stderr:
            argv = self.argv if cgroup_procs is None else joining(cgroup_procs, self.argv)
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True
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
