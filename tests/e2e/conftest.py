"""The end-to-end setting: ``stats-log-collector demo`` running real QEMU VMs, booted once for all e2e tests.

TCG boots take seconds of CPU on a shared 2-core machine, so one demo (two VMs) serves every test; a
test that stops or kills it starts it again. Waits are conditions with generous timeouts, never sleeps.
The kernel is fetched once per machine into ~/.cache (or taken from DEMO_KERNEL).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stats_log_collector.demo.guest import demo_guests, parse_guest_line
from stats_log_collector.demo.host import find_tools
from stats_log_collector.demo.kernel import KernelUnavailable, ensure_kernel
from stats_log_collector.demo.layout import Layout
from stats_log_collector.demo.processes import process_argv, read_pidfile
from tests.helpers import free_port, wait_for
from tests.kubelet_logs import LogFormat, read_log_file, rebuild

VMS = 2
PREFIX = (
    f"e2e{os.getpid()}-vm"  # this session's VMs: memstat sees every QEMU of the host, other sessions' too
)
BOOT_TIMEOUT = 180.0  # TCG on two busy cores: a boot is ~5 s alone, much more under load

_tools = find_tools()
MISSING = (
    "QEMU is not installed (apt-get install qemu-system-x86)"
    if _tools.qemu is None
    else "no static busybox to build the guest (apt-get install busybox-static)"
    if _tools.busybox is None
    else None
)


def guest_kernel() -> Path:
    if os.environ.get("DEMO_KERNEL"):
        return Path(os.environ["DEMO_KERNEL"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stats-log-collector"
    try:
        return ensure_kernel(cache / "kernel")
    except KernelUnavailable as exc:
        pytest.fail(f"no guest kernel (set DEMO_KERNEL to a vmlinuz to use another): {exc}")


class RunningDemo:
    """The demo command as a process, with what the tests need to look at it."""

    def __init__(self, root: Path, kernel: Path) -> None:
        self.layout = Layout(root)
        self.port = free_port()
        self.kernel = kernel
        self.guests = demo_guests(VMS, PREFIX)
        self.stdout_path = root.parent / "demo.stdout"
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def names(self) -> list[str]:
        return [guest.name for guest in self.guests]

    def start(self) -> None:
        self.runs += 1
        env = {
            **os.environ,
            "DEMO_DIR": str(self.layout.root),
            "DEMO_VMS": str(VMS),
            "DEMO_VM_PREFIX": PREFIX,
            "DEMO_KERNEL": str(self.kernel),
            "HTTP_PORT": str(self.port),
        }
        with self.stdout_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stats_log_collector", "demo"], env=env, stdout=out, stderr=out
            )
        wait_for(lambda: self.stdout.count("VMs booting under QEMU") == self.runs, "the demo to start", 60)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def qemu_pid(self, vm: str) -> int | None:
        pid = read_pidfile(self.layout.pidfile(f"qemu-{vm}"))
        return pid if pid is not None and process_argv(pid) is not None else None

    def wait_booted(self) -> None:
        """Every VM printed a line of this run into its pod log (the demo reports each once per run)."""
        for vm in self.names:
            wait_for(
                lambda vm=vm: self.stdout.count(f"{vm}: first console line") >= self.runs,  # type: ignore[misc]
                f"{vm}'s first console line",
                BOOT_TIMEOUT,
            )

    def stop(self, signum: int = signal.SIGINT) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        code = self.process.wait(timeout=60)
        self.process = None
        return code

    def ensure_running(self) -> RunningDemo:
        if self.process is None or self.process.poll() is not None:
            self.start()
        self.wait_booted()
        return self


@pytest.fixture(scope="package")  # stopped after the last e2e test: idle TCG guests still cost CPU
def demo_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    if MISSING is not None:
        pytest.skip(MISSING)
    kernel = guest_kernel()
    demo = RunningDemo(tmp_path_factory.mktemp("e2e") / "demo", kernel)
    demo.start()
    yield demo
    if demo.process is not None:
        demo.stop()
    for vm in demo.names:  # a test that failed half-way must not leave VMs running
        pid = demo.qemu_pid(vm)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
    for name in ("virtlet-log", "memstat"):
        pid = read_pidfile(demo.layout.pidfile(name))
        if pid is not None and str(demo.layout.root) in " ".join(process_argv(pid) or []):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def demo(demo_process: RunningDemo) -> RunningDemo:
    """The running demo, every VM booted (started again if a previous test stopped it)."""
    return demo_process.ensure_running()


def vm_rss_bytes(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def guest_seqs(text: bytes, vm: str) -> list[int]:
    lines = (parse_guest_line(line) for line in text.decode("utf-8", "replace").splitlines())
    return [line.seq for line in lines if line is not None and line.vm == vm]


def last_seq(text: bytes, vm: str) -> int:
    seqs = guest_seqs(text, vm)
    return seqs[-1] if seqs else 0


def assert_console_exact(output: Path, raw: Path, fmt: LogFormat, vm: str) -> list[int]:
    """The output, read with the kubelet-grammar checker, is exactly the console so far: every line once.

    The raw console is read after the output, so it holds at least what the output was made from; the
    output must be a prefix of it ending at a line end (``\\r\\n`` written as ``\\n``, as runtimes do).
    The guest's numbered lines must then run 1, 2, 3... within each boot: nothing lost, nothing twice.
    """
    rebuilt = rebuild(read_log_file(output, expect=fmt))
    console = raw.read_bytes().replace(b"\r\n", b"\n")
    assert rebuilt.endswith(b"\n")
    assert console.startswith(rebuilt), "the output is not exactly the console's beginning"
    seqs = guest_seqs(rebuilt, vm)
    assert seqs and seqs[0] == 1
    for previous, current in itertools.pairwise(seqs):
        assert current in (previous + 1, 1), f"{vm}: line {current} follows line {previous}"
    return seqs
