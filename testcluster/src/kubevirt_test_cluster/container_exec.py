"""``pods/exec`` over WebSocket, and a virt-launcher ``compute`` container to exec into.

A memory collector reads ``/proc/<pid>/status`` by running ``pidof`` and ``cat`` in each
launcher's ``compute`` container through the API. kmock cannot upgrade a connection, so this
module speaks the Kubernetes remote-command WebSocket protocol itself (subprotocols
``v4.channel.k8s.io``, used by kr8s, and ``v5.channel.k8s.io``, preferred by kubectl 1.30+):
every binary frame starts with a channel byte (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize,
255 close in v5), and the command ends with a ``Status`` on channel 3 carrying the exit code as
``details.causes[{reason: ExitCode}]``.

Commands run in a fake process table, so tests control what ``pidof`` finds (none, one, several
PIDs) and what the status and cmdline files say. Besides ``pidof`` and ``cat``, the table answers the
one-exec status scan a collector may run instead (``sh -c <script> sh NAME...`` over
``/proc/[0-9]*/status``): for each process whose status ``Name`` is one of NAME or a QEMU's
(``qemu-system-*``, ``qemu-kvm``), a ``### pid <pid>`` line, then its status, and, when the script
also reads ``/cmdline``, a ``### cmdline`` line, its NUL-separated argv and a newline.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

STDOUT, STDERR, ERROR = 1, 2, 3
COMM_LEN = 15  # TASK_COMM_LEN - 1: the kernel keeps this much of an executable's name as comm
CLOSE = 255
SUBPROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")


@dataclass(frozen=True)
class CommandResult:
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0


ExecHandler = Callable[[str, str, str, list[str]], "CommandResult | Awaitable[CommandResult]"]


@dataclass(frozen=True)
class Process:
    """A process of the table. ``name`` is the executable's whole name: the kernel's comm (status
    ``Name``, ``/proc/<pid>/comm``) is its first 15 characters; ``argv`` defaults to ``(name,)``."""

    pid: int
    name: str
    status: str  # the text of /proc/<pid>/status
    argv: tuple[str, ...] = ()

    @property
    def comm(self) -> str:
        return self.name[:COMM_LEN]

    @property
    def cmdline(self) -> str:
        """/proc/<pid>/cmdline: each argument NUL-terminated."""
        return "".join(f"{arg}\0" for arg in self.argv or (self.name,))


ProcessTable = Mapping[int, Process]
# How a test gives a process: (name, status text) or (name, status text, argv).
ProcessEntry = tuple[str, str] | tuple[str, str, tuple[str, ...]]


def exit_status(exit_code: int) -> dict[str, Any]:
    """The ``Status`` sent on the error channel when a command ends."""
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            "command terminated with non-zero exit code: "
            f"error executing command [...], exit code {exit_code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }


def run_in_process_table(processes: ProcessTable, command: list[str]) -> CommandResult:
    """A tiny shell for a virt-launcher ``compute`` container: ``pidof``, ``cat``, the status scan."""
    if not command:
        return CommandResult(stderr=b"sh: 1: : not found\n", exit_code=127)
    program, args = command[0].rsplit("/", 1)[-1], command[1:]
    if program == "sh" and len(args) >= 2 and args[0] == "-c" and STATUS_SCAN_GLOB in args[1]:
        return _status_scan(processes, args[3:], with_argv="/cmdline" in args[1])  # args[2] is $0
    if program == "pidof":
        return _pidof(processes, [arg for arg in args if not arg.startswith("-")])
    if program == "cat":
        return _cat(processes, args)
    return CommandResult(stderr=f"{command[0]}: command not found\n".encode(), exit_code=127)


def _pidof(processes: ProcessTable, names: list[str]) -> CommandResult:
    # procps pidof prints the newest (highest) PID first, space separated; exit 1 when none.
    pids = sorted((proc.pid for proc in processes.values() if proc.name in names), reverse=True)
    if not pids:
        return CommandResult(exit_code=1)
    return CommandResult(stdout=(" ".join(str(pid) for pid in pids) + "\n").encode())


STATUS_SCAN_GLOB = "/proc/[0-9]*/status"
STATUS_SCAN_MARKER = "### pid "
STATUS_SCAN_CMDLINE = "### cmdline\n"
QEMU_COMM_PREFIX, QEMU_KVM = "qemu-system-", "qemu-kvm"


def _status_scan(processes: ProcessTable, names: list[str], *, with_argv: bool) -> CommandResult:
    # The glob expands in lexical order; the kernel's Name is the comm, cut to 15 characters.
    wanted = set(names)
    chunks = []
    for proc in sorted(processes.values(), key=lambda proc: str(proc.pid)):
        is_qemu = proc.comm.startswith(QEMU_COMM_PREFIX) or proc.comm == QEMU_KVM
        if proc.comm in wanted or (with_argv and is_qemu):
            chunks.append(f"{STATUS_SCAN_MARKER}{proc.pid}\n{proc.status}")
            if with_argv:
                chunks.append(f"{STATUS_SCAN_CMDLINE}{proc.cmdline}\n")
    return CommandResult(stdout="".join(chunks).encode())


def _cat(processes: ProcessTable, paths: list[str]) -> CommandResult:
    stdout, stderr, code = [], [], 0
    for path in paths:
        content = _read_proc_file(processes, path)
        if content is None:
            stderr.append(f"cat: {path}: No such file or directory\n")
            code = 1
        else:
            stdout.append(content)
    return CommandResult("".join(stdout).encode(), "".join(stderr).encode(), code)


def _read_proc_file(processes: ProcessTable, path: str) -> str | None:
    parts = path.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "proc" or not parts[1].isdigit():
        return None
    process = processes.get(int(parts[1]))
    if process is None:
        return None
    if parts[2] == "status":
        return process.status
    if parts[2] == "comm":
        return process.comm + "\n"
    if parts[2] == "cmdline":
        return process.cmdline
    return None


def proc_status(
    name: str,
    pid: int,
    *,
    vm_rss_kb: int,
    rss_file_kb: int | None = None,
    rss_shmem_kb: int = 0,
    vm_size_kb: int | None = None,
    vm_hwm_kb: int | None = None,
    vm_swap_kb: int = 0,
    threads: int = 8,
    ppid: int = 0,
) -> str:
    """A realistic ``/proc/<pid>/status`` (Linux 6.1 layout), ``VmRSS = RssAnon + RssFile + RssShmem``."""
    rss_file = rss_file_kb if rss_file_kb is not None else vm_rss_kb // 5
    rss_anon = max(0, vm_rss_kb - rss_file - rss_shmem_kb)
    vm_size = vm_size_kb if vm_size_kb is not None else vm_rss_kb * 3 + 120_000
    vm_exe = 12_000 if name == "qemu-kvm" else 40_000
    memory = {
        "VmPeak": vm_size + 4096,
        "VmSize": vm_size,
        "VmLck": 0,
        "VmPin": 0,
        "VmHWM": vm_hwm_kb if vm_hwm_kb is not None else vm_rss_kb + vm_rss_kb // 20,
        "VmRSS": vm_rss_kb,
        "RssAnon": rss_anon,
        "RssFile": rss_file,
        "RssShmem": rss_shmem_kb,
        "VmData": vm_size // 2,
        "VmStk": 132,
        "VmExe": vm_exe,
        "VmLib": 30_416,
        "VmPTE": max(4, vm_size // 1000),
        "VmSwap": vm_swap_kb,
        "HugetlbPages": 0,
    }
    head = [
        f"Name:\t{name[:15]}",
        "Umask:\t0022",
        "State:\tS (sleeping)",
        f"Tgid:\t{pid}",
        "Ngid:\t0",
        f"Pid:\t{pid}",
        f"PPid:\t{ppid}",
        "TracerPid:\t0",
        "Uid:\t107\t107\t107\t107",
        "Gid:\t107\t107\t107\t107",
        "FDSize:\t64",
        "Groups:\t107 ",
        f"NStgid:\t{pid}",
        f"NSpid:\t{pid}",
        f"NSpgid:\t{pid}",
        f"NSsid:\t{pid}",
        "Kthread:\t0",
    ]
    body = [f"{key}:\t{value:8d} kB" for key, value in memory.items()]
    tail = [
        "CoreDumping:\t0",
        "THP_enabled:\t1",
        f"Threads:\t{threads}",
        "SigQ:\t0/63457",
        "SigPnd:\t0000000000000000",
        "ShdPnd:\t0000000000000000",
        "SigBlk:\t0000000000000000",
        "SigIgn:\t0000000000001000",
        "SigCgt:\t0000000180004a03",
        "CapInh:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000400",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
        "Seccomp_filters:\t1",
        "Speculation_Store_Bypass:\tthread vulnerable",
        "SpeculationIndirectBranch:\tconditional enabled",
        "Cpus_allowed:\t3",
        "Cpus_allowed_list:\t0-1",
        "Mems_allowed:\t00000000,00000001",
        "Mems_allowed_list:\t0",
        "voluntary_ctxt_switches:\t1523",
        "nonvoluntary_ctxt_switches:\t41",
    ]
    return "\n".join(head + body + tail) + "\n"


QEMU_KVM_PATH = "/usr/libexec/qemu-kvm"


def launcher_processes(
    vm_name: str,
    qemu_rss_kb: int = 215_000,
    *,
    namespace: str = "default",
    emulator: str | None = QEMU_KVM_PATH,
) -> dict[int, Process]:
    """The processes of a virt-launcher ``compute`` container, with plausible memory figures and argv.

    As in kubevirt/kubevirt: PID 1 is ``/usr/bin/virt-launcher-monitor`` (the container's command,
    ``pkg/virt-controller/services/template.go``, ``renderLaunchManifest``), which starts
    ``virt-launcher`` with the same flags; virt-launcher starts ``virtqemud`` and ``virtlogd``, and
    libvirt starts QEMU, ``/usr/libexec/qemu-kvm`` in KubeVirt's images (the emulator libvirt probes in
    kubevirt/kubevirt#8615), with the domain named ``<namespace>_<name>``
    (``pkg/virt-launcher/virtwrap/util/libvirt_helper.go``, ``VMINamespaceKeyFunc``). ``emulator`` is
    the QEMU binary's path (``/usr/bin/qemu-system-x86_64``: comm ``qemu-system-x86``); None: a pod
    whose QEMU is not (or no longer) running.
    """
    launcher_flags = (
        *("--qemu-timeout", "338s", "--name", vm_name, "--namespace", namespace),
        *("--kubevirt-share-dir", "/var/run/kubevirt", "--grace-period-seconds", "45"),
    )
    specs: list[tuple[int, str, int, int, tuple[str, ...]]] = [
        (1, "virt-launcher-monitor", 18_000, 0, ("/usr/bin/virt-launcher-monitor", *launcher_flags)),
        (12, "virt-launcher", 58_000, 1, ("/usr/bin/virt-launcher", *launcher_flags)),
        (25, "virtqemud", 31_000, 12, ("/usr/sbin/virtqemud",)),
        (26, "virtlogd", 16_000, 12, ("/usr/sbin/virtlogd",)),
    ]
    if emulator is not None:
        guest = f"guest={namespace}_{vm_name},debug-threads=on"
        qemu_argv = (
            *(emulator, "-name", guest, "-S", "-machine", "q35,usb=off,dump-guest-core=off"),
            *("-accel", "kvm", "-m", "size=1048576k", "-no-user-config", "-nodefaults"),
        )
        specs.append((82, emulator.rsplit("/", 1)[-1], qemu_rss_kb, 1, qemu_argv))
    return {
        pid: Process(
            pid,
            name,
            proc_status(name, pid, vm_rss_kb=rss, ppid=ppid, threads=4 if pid != 82 else 9),
            argv,
        )
        for pid, name, rss, ppid, argv in specs
    }


async def call_handler(
    handler: ExecHandler, namespace: str, pod: str, container: str, command: list[str]
) -> CommandResult:
    result = handler(namespace, pod, container, command)
    if inspect.isawaitable(result):
        result = await result
    assert isinstance(result, CommandResult)
    return result


async def serve_websocket(
    raw_request: web.BaseRequest,
    run: Callable[[], Awaitable[CommandResult]],
    *,
    want_stdout: bool,
    want_stderr: bool,
    want_stdin: bool,
) -> web.WebSocketResponse:
    """Upgrade, run the command, send its output and exit status on their channels, close."""
    ws = web.WebSocketResponse(protocols=SUBPROTOCOLS, autoping=True)
    await ws.prepare(raw_request)
    if want_stdin and ws.ws_protocol == "v5.channel.k8s.io":  # only v5 can say "end of stdin"
        await _drain_stdin(ws)
    try:
        result = await run()
    except Exception as error:  # a broken handler is reported the way the API reports an internal error
        failure = {
            "metadata": {},
            "status": "Failure",
            "reason": "InternalError",
            "message": f"Internal error occurred: {error!r}",
        }
        await ws.send_bytes(bytes([ERROR]) + json.dumps(failure).encode())
        await ws.close()
        return ws
    if want_stdout and result.stdout:
        await ws.send_bytes(bytes([STDOUT]) + result.stdout)
    if want_stderr and result.stderr:
        await ws.send_bytes(bytes([STDERR]) + result.stderr)
    await ws.send_bytes(bytes([ERROR]) + json.dumps(exit_status(result.exit_code)).encode())
    await ws.close()
    return ws


async def _drain_stdin(ws: web.WebSocketResponse) -> None:
    """Read stdin frames until the client closes stdin (v5 close channel) or the socket."""
    async for message in ws:
        if message.type != WSMsgType.BINARY:
            break
        data: bytes = message.data
        if data[:1] == bytes([CLOSE]):
            break
