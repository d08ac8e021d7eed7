"""The /proc parsers on literal text: status, smaps_rollup, QEMU's -name, and cgroup → pod UID."""

from __future__ import annotations

import pytest

from stats_log_collector.memstat.procstatus import (
    memory_figures,
    parse_smaps_rollup,
    parse_status,
    pod_uid_from_cgroup,
    qemu_vm_name,
    split_cmdline,
)

STATUS = """\
Name:\tqemu-kvm
Umask:\t0022
State:\tS (sleeping)
Pid:\t4242
VmPeak:\t 2100000 kB
VmSize:\t 2000000 kB
VmLck:\t       0 kB
VmHWM:\t 1100000 kB
VmRSS:\t 1048576 kB
RssAnon:\t 1000000 kB
RssFile:\t   40000 kB
RssShmem:\t    8576 kB
VmSwap:\t      12 kB
Threads:\t5
"""

ROLLUP = """\
00400000-7ffc4a1f2000 ---p 00000000 00:00 0                              [rollup]
Rss:             1048576 kB
Pss:              900000 kB
Pss_Anon:         890000 kB
Swap:                 12 kB
"""

UID = "0c6a8d5e-1b2f-4c3d-9e8f-0123456789ab"


def test_status_fields_and_kb() -> None:
    fields, kb = parse_status(STATUS)
    assert fields["Name"] == "qemu-kvm"
    assert fields["Pid"] == "4242"
    assert kb["VmRSS"] == 1048576
    assert kb["RssShmem"] == 8576
    assert "Threads" not in kb and fields["Threads"] == "5"


def test_smaps_rollup() -> None:
    kb = parse_smaps_rollup(ROLLUP)
    assert kb == {"Rss": 1048576, "Pss": 900000, "Pss_Anon": 890000, "Swap": 12}


def test_memory_figures_bytes() -> None:
    _, kb = parse_status(STATUS)
    figures = memory_figures(kb, parse_smaps_rollup(ROLLUP))
    assert figures.rss_bytes == 1048576 * 1024
    assert figures.rss_anon_bytes == 1000000 * 1024
    assert figures.rss_file_bytes == 40000 * 1024
    assert figures.rss_shmem_bytes == 8576 * 1024
    assert figures.pss_bytes == 900000 * 1024
    assert figures.vm_hwm_bytes == 1100000 * 1024
    assert figures.vm_size_bytes == 2000000 * 1024
    assert figures.swap_bytes == 12 * 1024
    assert figures.status_kb["VmPeak"] == 2100000


def test_memory_figures_without_rollup_or_breakdown() -> None:
    figures = memory_figures({"VmRSS": 10})
    assert figures.rss_bytes == 10240
    assert figures.pss_bytes is None and figures.rss_anon_bytes is None and figures.swap_bytes is None


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["qemu-system-x86_64", "-m", "512", "-name", "vm1,process=qemu-vm1"], "vm1"),
        (["/usr/libexec/qemu-kvm", "-name", "guest=default_vm2,debug-threads=on", "-S"], "default_vm2"),
        (["qemu-kvm", "-name", "plain"], "plain"),
        (["qemu-kvm", "-name", "a,,b,process=x"], "a,b"),
        (["qemu-kvm", "-name=vm3"], "vm3"),
        (["qemu-kvm", "-m", "1G"], None),
        (["qemu-kvm", "-name"], None),
        ([], None),
    ],
)
def test_qemu_vm_name(argv: list[str], name: str | None) -> None:
    assert qemu_vm_name(argv) == name


def test_split_cmdline() -> None:
    assert split_cmdline(b"qemu-kvm\0-name\0vm1\0") == ["qemu-kvm", "-name", "vm1"]
    assert split_cmdline(b"") == []


@pytest.mark.parametrize(
    "text",
    [
        # cgroup v2, systemd driver
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        + UID.replace("-", "_")
        + ".slice/cri-containerd-abc.scope\n",
        # guaranteed QoS, systemd driver
        "0::/kubepods.slice/kubepods-pod" + UID.replace("-", "_") + ".slice/crio-1.scope\n",
        # cgroup v1, cgroupfs driver
        "12:memory:/kubepods/burstable/pod"
        + UID
        + "/0123abcd\n11:cpu,cpuacct:/kubepods/burstable/pod"
        + UID
        + "/0123abcd\n",
        "4:pids:/kubepods/pod" + UID + "/ffff\n",
        "0::/kubepods/besteffort/pod" + UID + "/ffff\n",
    ],
)
def test_pod_uid_from_cgroup(text: str) -> None:
    assert pod_uid_from_cgroup(text) == UID


@pytest.mark.parametrize(
    "text", ["0::/user.slice/user-1000.slice/session-2.scope\n", "0::/\n", "", "12:memory:/system.slice\n"]
)
def test_no_pod_on_plain_host(text: str) -> None:
    assert pod_uid_from_cgroup(text) is None


def test_status_starting_with_a_kb_field() -> None:
    assert parse_status("VmRSS:\t5 kB\nName:\tx\n") == ({"Name": "x"}, {"VmRSS": 5})
