"""A node's /proc as files: the process directories memstat's procfs source reads, for tests that run it."""

from __future__ import annotations

from pathlib import Path


def fake_qemu(proc: Path, pid: int, vm: str, pod_uid: str, rss_kb: int) -> None:
    """/proc/<pid> of a QEMU started as ``-name guest=<vm>`` in the cgroup of the launcher pod ``pod_uid``
    (systemd cgroup driver, cgroup v2), as the kernel shows it."""
    base = proc / str(pid)
    base.mkdir(parents=True)
    pod_slice = f"kubepods-burstable-pod{pod_uid.replace('-', '_')}.slice"
    (base / "comm").write_text("qemu-kvm\n")
    argv = ["/usr/libexec/qemu-kvm", "-name", f"guest={vm},debug-threads=on", "-m", "1024"]
    (base / "cmdline").write_bytes(b"".join(arg.encode() + b"\0" for arg in argv))
    (base / "cgroup").write_text(
        f"0::/kubepods.slice/kubepods-burstable.slice/{pod_slice}/cri-containerd-1.scope\n"
    )
    (base / "status").write_text(
        f"Name:\tqemu-kvm\nPid:\t{pid}\nVmRSS:\t{rss_kb} kB\nRssAnon:\t{rss_kb} kB\n"
    )
    (base / "smaps_rollup").write_text(
        f"0-1 ---p 00000000 00:00 0 [rollup]\nRss: {rss_kb} kB\nPss: {rss_kb} kB\n"
    )
