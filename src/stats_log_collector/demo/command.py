"""``stats-log-collector demo``: real QEMU VMs on this machine, watched by virtlet-log and memstat.

1. The host: QEMU and a static busybox, installed with apt-get as root; otherwise the exact command is
   printed and nothing else happens.
2. The images: the cloud kernel and a busybox initramfs, cached in DEMO_DIR/images.
3. The run: virtlet-log and memstat as child processes configured through their public settings, as on
   a node; then one QEMU per guest, with the demo playing kubelet's part by creating each pod's log
   directory. It prints where everything is, then when the first console line reached the pod logs and
   when every VM had a point on the dashboard: the two waits a newcomer has.

Each QEMU runs in a memory cgroup of its own with a limit (``cgroup.py``), as in a pod, so memstat shows the
VM's headroom; where the machine does not allow it the demo says once why, and runs without.

Ctrl-C stops the VMs first (so the loggers see their last lines), then the components, and leaves
everything in DEMO_DIR; the next run boots the same VMs into the same files, and virtlet-log continues
from its checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
import urllib.request
from pathlib import Path

from .. import PROG, lifecycle
from ..settings import DemoSettings
from .cgroup import OVERHEAD_ALLOWANCE_MIB, CgroupUnavailable, VmCgroups, limit_bytes
from .children import Child, child_environment
from .guest import INIT_SCRIPT, GuestSpec, demo_guests, parse_guest_line
from .host import advice, apt_lists_present, find_tools, install, install_commands, is_root, missing_packages
from .initramfs import ensure_initramfs
from .kernel import KernelUnavailable, ensure_kernel
from .layout import Layout
from .processes import stop_stale
from .qemu import QEMU_BINARY, QemuVm, VmConfig

log = logging.getLogger(__name__)

STOP_GRACE = 30.0  # stopping QEMUs and components in order takes a few seconds; a second Ctrl-C cuts it
WATCH_PERIOD = 0.25


def run(config: DemoSettings) -> int:
    began = time.monotonic()
    layout = Layout(config.demo_dir.absolute())
    busybox = _prepare_host(layout, need_kernel=config.demo_kernel is None)
    if busybox is None:
        return 1
    try:
        kernel = config.demo_kernel or ensure_kernel(layout.images)
    except KernelUnavailable as exc:
        print(f"{PROG} demo: no kernel to boot: {exc}", file=sys.stderr)
        return 1
    initrd = ensure_initramfs(layout.images, busybox, INIT_SCRIPT)
    demo = Demo(
        layout, demo_guests(config.demo_vms, config.demo_vm_prefix), kernel, initrd, config.http_port, began
    )
    lifecycle.run(demo.run, grace=STOP_GRACE)
    return demo.exit_code


def _prepare_host(layout: Layout, need_kernel: bool) -> Path | None:
    """The static busybox to use, after installing what is missing; None (and why, printed) if we cannot."""
    tools = find_tools()
    missing = missing_packages(tools)
    need_lists = need_kernel and not (layout.images / "vmlinuz").is_file() and not apt_lists_present()
    commands = install_commands(missing, update=need_lists)
    if commands:
        if not is_root():
            print(f"{PROG} demo: {advice(missing, commands)}\nthen `make demo` again.", file=sys.stderr)
            return None
        install(commands)
        tools = find_tools()
    if tools.busybox is None or tools.qemu is None:  # installed, yet not there: say so rather than fail later
        print(f"{PROG} demo: {QEMU_BINARY} or a static busybox is still missing", file=sys.stderr)
        return None
    return Path(tools.busybox)


class Demo:
    def __init__(
        self, layout: Layout, guests: list[GuestSpec], kernel: Path, initrd: Path, port: int, began: float
    ) -> None:
        self.layout = layout
        self.guests = guests
        self.port = port
        self.began = began
        self.exit_code = 0
        self.vms = [
            QemuVm(
                VmConfig(
                    name=guest.name,
                    memory_mib=guest.memory_mib,
                    kernel=kernel,
                    initrd=initrd,
                    console_log=layout.console_log(guest.name),
                    pidfile=layout.pidfile(f"qemu-{guest.name}"),
                    kernel_args=guest.kernel_args(),
                ),
                layout.logs / f"qemu-{guest.name}.log",
            )
            for guest in guests
        ]
        self.virtlet_log = self._child(
            "virtlet-log",
            ["--virtlet-vm-log-location", str(layout.vms), "--kubernetes-pod-logs", str(layout.pods),
             "--state-dir", str(layout.virtlet_state)],
            {"LOG_FORMAT": "cri"},
        )  # fmt: skip
        self.memstat = self._child(
            "memstat",
            # No cluster: a kubeconfig that does not exist makes memstat name VMs from QEMU's -name
            # rather than reach for ~/.kube/config; the logs browser shows the pod logs.
            ["--memstat-source", "procfs", "--process-names", QEMU_BINARY, "--data-dir", str(layout.memstat),
             "--http-port", str(port), "--logs-dir", str(layout.pods),
             "--kubeconfig", str(layout.root / "no-cluster" / "kubeconfig")],
            {"POLL_INTERVAL_SECS": "1"},
        )  # fmt: skip
        self._first_line: set[str] = set()
        self._read_at: dict[str, int] = {}  # how far each pod log has been looked at for the first line
        self._charted = False
        self._exited: set[str] = set()
        self.cgroups: VmCgroups | None = None  # set in _start where the machine allows it
        self.cgroups_unavailable = ""  # why not, shown once

    def _child(self, command: str, args: list[str], defaults: dict[str, str]) -> Child:
        """A component; ``defaults`` apply unless the user's environment sets them (LOG_FORMAT=json...)."""
        env = child_environment({})
        for key, value in defaults.items():
            env.setdefault(key, value)
        return Child(
            command,
            args,
            env,
            self.layout.logs / f"{command}.log",
            self.layout.pidfile(command),
            marker=str(self.layout.root),
        )

    @property
    def children(self) -> list[Child]:
        return [self.virtlet_log, self.memstat]

    async def run(self, stop: asyncio.Event) -> None:
        try:
            self._start()
            self._print_where()
            await self._watch(stop)
        finally:
            await asyncio.to_thread(self._shutdown)

    def _start(self) -> None:
        # What a run killed with -9 left behind first: its VMs would keep writing the consoles.
        for child in self.children:
            stop_stale(child.pidfile, child.marker)
        for vm in self.vms:
            stop_stale(vm.config.pidfile, str(vm.config.pidfile))
        for guest in self.guests:  # kubelet's part: the pod's log directory and its container's
            pod_log = self.layout.pod_log(guest.name)
            pod_log.parent.mkdir(parents=True, exist_ok=True)
            self._read_at[guest.name] = pod_log.stat().st_size if pod_log.exists() else 0
        for child in self.children:
            child.start()
        self._make_cgroups()
        for vm in self.vms:
            vm.start(self.cgroups.procs_file(vm.config.name) if self.cgroups is not None else None)

    def _make_cgroups(self) -> None:
        """One memory cgroup per VM, limit = guest memory + QEMU's allowance; all or none."""
        try:
            cgroups = VmCgroups.of_this_process()
        except CgroupUnavailable as exc:
            self.cgroups_unavailable = str(exc)
            return
        try:
            for vm in self.vms:
                cgroups.create(vm.config.name, limit_bytes(vm.config.memory_mib))
        except CgroupUnavailable as exc:
            self.cgroups_unavailable = str(exc)
            cgroups.remove_all(vm.config.name for vm in self.vms)
            return
        self.cgroups = cgroups

    def _print_where(self) -> None:
        root = self.layout.root
        url = f"http://127.0.0.1:{self.port}"
        lines = [
            f"{len(self.vms)} VMs booting under QEMU (TCG): {', '.join(g.name for g in self.guests)}",
            f"  dashboard       {url}/dashboard?range=300",
            f"  memory CSV      {url}/mem-stats.csv   ({self.layout.memstat / 'mem-stats.csv'})",
            f"  console logs    {url}/logs/   (kubelet's files, written by virtlet-log)",
        ]
        for guest in self.guests:
            lines.append(f"    {guest.name:<12} {self.layout.pod_log(guest.name)}")
        lines += [
            f"  raw consoles    {self.layout.vms}/<sandbox>/<vm>_0.log",
            f"  own logs        {self.layout.logs}/",
            self._cgroups_line(),
            f"  follow one:     tail -f {self.layout.pod_log(self.guests[0].name)}",
            f"Ctrl-C stops the VMs and the components; everything stays in {root}.",
        ]
        print("\n".join(lines), flush=True)

    def _cgroups_line(self) -> str:
        if self.cgroups is None:
            return (
                f"  memory cgroups  none, so memstat shows no limit nor headroom: {self.cgroups_unavailable}"
            )
        return (
            f"  memory cgroups  {self.cgroups.parent}/<vm>, limit = guest memory + "
            f"{OVERHEAD_ALLOWANCE_MIB} MiB ({self.cgroups.hierarchy.limit_file})"
        )

    async def _watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            failed = [child for child in self.children if child.exit_code() is not None]
            if failed:
                for child in failed:
                    print(
                        f"{PROG} demo: {child.command} exited (code {child.exit_code()}); "
                        f"its log: {child.log_file}\n{_tail(child.log_file)}",
                        file=sys.stderr,
                    )
                self.exit_code = 1
                return
            self._report_vm_exits()
            self._report_first_lines()
            if not self._charted:
                self._charted = await asyncio.to_thread(self._report_chart)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_PERIOD)

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self.began:.1f} s"

    def _report_vm_exits(self) -> None:
        for vm in self.vms:
            code = vm.exit_code()
            if code is not None and vm.config.name not in self._exited:
                self._exited.add(vm.config.name)
                log.warning(
                    "VM stopped", extra={"vm": vm.config.name, "code": code, "log": str(vm.stderr_log)}
                )

    def _report_first_lines(self) -> None:
        """When each guest's first line of this boot (``seq=1``) is in its pod log; printed once."""
        for guest in self.guests:
            if guest.name in self._first_line:
                continue
            lines, self._read_at[guest.name] = _new_lines(
                self.layout.pod_log(guest.name), self._read_at[guest.name]
            )
            first = next((line for line in lines if _is_first(line, guest.name)), None)
            if first is not None:
                self._first_line.add(guest.name)
                print(
                    f"{guest.name}: first console line in its pod log after {self._elapsed()}: {first}",
                    flush=True,
                )

    def _report_chart(self) -> bool:
        """Whether every VM has a point on the dashboard's chart (its /api/series); printed once."""
        since = int(time.monotonic() - self.began) + 1  # points of this run only
        url = f"http://127.0.0.1:{self.port}/api/series?since=-{since}s&points=100"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                series = json.load(response)["series"]
        except (OSError, ValueError, KeyError):
            return False
        charted = {name for name, values in series.items() if any(v is not None for v in values)}
        if not all(guest.name in charted for guest in self.guests):
            return False
        print(f"dashboard: every VM has its first point after {self._elapsed()}", flush=True)
        return True

    def _shutdown(self) -> None:
        for vm in self.vms:
            vm.stop()
        if self.cgroups is not None:
            self.cgroups.remove_all(vm.config.name for vm in self.vms)
        # virtlet-log sees a console's last lines within milliseconds (inotify): give it that moment
        # before its SIGTERM, so the pod logs are complete when people look at them.
        time.sleep(1.0)
        for child in self.children:
            child.stop()
        print(
            f"stopped; the VMs' consoles, pod logs and memory samples are in {self.layout.root}", flush=True
        )


def _new_lines(pod_log: Path, offset: int) -> tuple[list[str], int]:
    """The console lines of a kubelet log file's complete lines after ``offset``, and the new offset."""
    try:
        with pod_log.open("rb") as file:
            file.seek(offset)
            data = file.read()
    except FileNotFoundError:
        return [], offset
    complete = data[: data.rfind(b"\n") + 1]
    return [_console_text(line) for line in complete.splitlines()], offset + len(complete)


def _console_text(line: bytes) -> str:
    """A kubelet log line's console text: CRI after timestamp, stream and tag; JSON's ``log``."""
    if line.startswith(b"{"):  # LOG_FORMAT=json
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return str(json.loads(line)["log"]).rstrip("\n")
    fields = line.split(b" ", 3)
    return (fields[3] if len(fields) == 4 else line).decode("utf-8", "replace")


def _is_first(text: str, vm: str) -> bool:
    line = parse_guest_line(text)
    return line is not None and line.vm == vm and line.seq == 1


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
