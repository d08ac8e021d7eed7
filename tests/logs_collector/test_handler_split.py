"""Splitting a node's virt-handler log among its VMs, in one pass."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubevirt_test_cluster import format_rfc3339_nano, handler_line, klog_line
from stats_log_collector.logs_collector.cursor import NANOS, Cursor
from stats_log_collector.logs_collector.handler_split import HandlerSplitter, VmIdentity, VmMatcher

VM1 = VmIdentity("vms", "vm-1", "11111111-1111-4111-8111-111111111111")
VM10 = VmIdentity("vms", "vm-10", "10101010-1010-4010-8010-101010101010")
OTHER_NS = VmIdentity("other", "vm-1", "22222222-2222-4222-8222-222222222222")
BASE = 1_795_000_000 * NANOS


def test_json_lines_by_uid_then_by_namespace_and_name() -> None:
    matcher = VmMatcher([VM1, VM10, OTHER_NS])
    assert matcher.match(handler_line("x", name="vm-1", namespace="vms", uid=VM1.uid).encode()) == (0,)
    assert matcher.match(handler_line("x", name="vm-1", namespace="other").encode()) == (2,)
    # a uid of another VMI: the namespace and name still decide
    assert matcher.match(handler_line("x", name="vm-10", namespace="vms", uid="dead").encode()) == (1,)
    # a line about some other object names nobody, even if its message mentions a VM
    assert matcher.match(handler_line("vms/vm-1 moved", name="vm-99", namespace="vms").encode()) == ()


def test_text_lines_that_name_the_vm() -> None:
    matcher = VmMatcher([VM1, VM10, OTHER_NS])
    assert matcher.match(klog_line("Processing vmi vms/vm-10").encode()) == (1,)
    assert matcher.match(klog_line(f"domain {VM10.uid} stopped").encode()) == (1,)
    assert matcher.match(klog_line("vmi other/vm-1 migrated").encode()) == (2,)
    # a bare name shared by two namespaces on the node names neither (nor vm-10); counted
    assert matcher.match(klog_line("vm-1 is shutting down.").encode()) == ()
    assert matcher.ambiguous_lines == 1
    # a bare name held by one VM of the node is that VM
    assert matcher.match(klog_line("vm-10 is shutting down.").encode()) == (1,)
    assert matcher.match(klog_line("vm-100 and vm-1x and avm-1 and vms/vm-1.5").encode()) == ()
    assert matcher.match(klog_line("Node heartbeat succeeded").encode()) == ()
    # a JSON line with no object: its text decides
    assert matcher.match(handler_line("evicting vms/vm-1").encode()) == (0,)


def stamped(offset: int, text: str) -> bytes:
    return f"{format_rfc3339_nano(BASE + offset)} {text}\n".encode()


@pytest.mark.parametrize("cut", [None, 5, 97])
def test_each_vm_gets_its_lines_after_its_own_cursor(cut: int | None) -> None:
    lines = [
        stamped(1, handler_line("a", name="vm-1", namespace="vms", uid=VM1.uid)),
        stamped(2, handler_line("b", name="vm-10", namespace="vms", uid=VM10.uid)),
        stamped(3, klog_line("Node heartbeat")),
        stamped(4, handler_line("c", name="vm-1", namespace="vms", uid=VM1.uid)),
        stamped(4, klog_line("sync vms/vm-10")),
        stamped(5, handler_line("d", name="vm-10", namespace="vms", uid=VM10.uid)),
    ]
    data = b"".join(lines)
    # vm-1 collected up to offset 1; vm-10 up to the first line stamped 4 that is about it... none: 2
    splitter = HandlerSplitter([VM1, VM10], [Cursor(BASE + 1, 1), Cursor(BASE + 2, 1)], block_bytes=64)
    pieces = [data] if cut is None else [data[i : i + cut] for i in range(0, len(data), cut)]
    out: dict[int, bytes] = {0: b"", 1: b""}
    for piece in pieces:
        for index, kept in splitter.feed(piece).items():
            out[index] += kept
    for index, kept in splitter.finish().items():
        out[index] += kept
    assert out[0] == lines[3]
    assert out[1] == lines[4] + lines[5]
    # vm-1's last line is at 4, but the log was read to 5: nothing about vm-1 up to 5 is left
    assert splitter.cursors() == [Cursor(BASE + 5, 0), Cursor(BASE + 5, 1)]


def test_a_vm_without_new_lines_keeps_its_cursor_until_the_log_moves_on() -> None:
    start = Cursor(BASE + 9, 3)
    splitter = HandlerSplitter([VM1], [start])
    assert splitter.feed(stamped(9, handler_line("old", uid=VM1.uid, name="vm-1", namespace="vms"))) == {}
    assert splitter.finish() == {}
    assert splitter.cursors() == [start]
    splitter = HandlerSplitter([VM1], [start])
    splitter.feed(stamped(9, handler_line("old", uid=VM1.uid, name="vm-1", namespace="vms")))
    splitter.feed(stamped(12, klog_line("Node heartbeat")))
    assert splitter.finish() == {}
    assert splitter.cursors() == [Cursor(BASE + 12, 0)]


@given(
    events=st.lists(
        st.tuples(st.sampled_from([0, 0, 1, NANOS // 2, NANOS]), st.sampled_from(["vm-1", "vm-10", "node"])),
        min_size=1,
        max_size=40,
    ),
    data=st.data(),
)
def test_consecutive_runs_split_a_growing_node_log_exactly(
    events: list[tuple[int, str]], data: st.DataObject
) -> None:
    vms = {"vm-1": VM1, "vm-10": VM10}
    stamps, log, owners = [], [], []
    stamp = BASE
    for gap, owner in events:
        stamp += gap
        vm = vms.get(owner)
        text = (
            handler_line("x", name=vm.name, namespace=vm.namespace, uid=vm.uid) if vm else klog_line("beat")
        )
        stamps.append(stamp)
        log.append(f"{format_rfc3339_nano(stamp)} {text}\n".encode())
        owners.append(owner)
    ends = [*sorted(data.draw(st.lists(st.integers(0, len(log)), max_size=5))), len(log)]
    cursors = [Cursor(BASE), Cursor(BASE)]
    collected = [b"", b""]
    for end in ends:
        since = min(cursor.second for cursor in cursors) * NANOS
        answer = b"".join(text for text, at in zip(log[:end], stamps[:end], strict=True) if at >= since)
        splitter = HandlerSplitter([VM1, VM10], cursors, block_bytes=data.draw(st.integers(1, 2000)))
        cut = data.draw(st.integers(1, 400))
        for i in range(0, len(answer), cut):
            for index, kept in splitter.feed(answer[i : i + cut]).items():
                collected[index] += kept
        for index, kept in splitter.finish().items():
            collected[index] += kept
        cursors = splitter.cursors()
    for index, name in enumerate(("vm-1", "vm-10")):
        assert collected[index] == b"".join(t for t, o in zip(log, owners, strict=True) if o == name)


# --- real lines from public kubevirt threads (tests/fixtures/virt-handler/README.md) ---------------------

REAL = Path(__file__).parents[1] / "fixtures" / "virt-handler"
FEDORA = VmIdentity("default", "vm-fedora", "e8029c52-eed7-4769-9186-7afb30e63138")
FEDORA_TEST2 = VmIdentity("fortest", "fedora-test2", "ddf0732f-63ce-47bc-95fe-924ea8bd8338")
VGPU = VmIdentity("default", "vgpu", "284121cf-96d7-49f6-be14-2fe80816b254")
WIN10 = VmIdentity("default", "win10", "0b9a7e06-5b93-479b-8485-03abb19c93fb")
MIGRATING = VmIdentity(
    "default", "migrating-vm", "c4c985cb-a40b-4f4f-aa72-39a946cba881"
)  # name not in the thread
KUBEVM = VmIdentity("default", "kubevm", "6c850a91-c501-45ec-88ff-52dc96de6a5d")
VM3 = VmIdentity("default", "vm3", "17d2e0ed-b183-4a75-ba23-fcfeda841602")
TESTVMI = VmIdentity(
    "kubevirt-test-default",
    "testvmicvz5v6znzx2n4zk2jwxrrc4fvhtb6bbvr4z5kmndkmxfhndm",
    "4468de5e-0372-11e9-a065-525500d15501",
)
# VMs of the same names in other namespaces, on the same node: none of the real lines is about them.
FEDORA_ELSEWHERE = VmIdentity("other", "vm-fedora", "0f0f0f0f-0f0f-4f0f-8f0f-0f0f0f0f0f0f")
VGPU_ELSEWHERE = VmIdentity("other", "vgpu", "0e0e0e0e-0e0e-4e0e-8e0e-0e0e0e0e0e0e")
NODE = [FEDORA, FEDORA_ELSEWHERE, FEDORA_TEST2, VGPU, VGPU_ELSEWHERE, WIN10, MIGRATING, KUBEVM, VM3, TESTVMI]

# Where each line of each file goes (None: nowhere).
WHERE: dict[str, list[VmIdentity | None]] = {
    "kubevirt-issue-11390.log": [FEDORA, FEDORA, FEDORA, FEDORA, FEDORA],  # watchdog, "uid":"", uid, ns/name
    "kubevirt-issue-10245.log": [None, None, FEDORA_TEST2, FEDORA_TEST2],  # escaped quotes, uid, watchdog
    "kubevirt-issue-12881.log": [None, None, None],  # no object; klog text
    "kubevirt-issue-11137.log": [VGPU, VGPU, None],
    "kubevirt-issue-10798.log": [WIN10, WIN10, WIN10, None],  # uid and reason; ns/name in msg twice
    "kubevirt-pr-5524.log": [MIGRATING, MIGRATING],  # uid only
    "kubevirt-issue-7281.log": [KUBEVM, None],  # uid; \u003e
    "kubevirt-issue-2588.log": [None, VM3, None],  # no msg; uid
    "kubevirt-pr-1731.log": [TESTVMI, TESTVMI, TESTVMI, None],  # uid; watchdog; the bare name, unique
    "kubevirt-issue-11044.log": [None],  # klog text
}


def real_lines(name: str) -> list[bytes]:
    return (REAL / name).read_bytes().splitlines()


def test_the_fixtures_hold_enough_real_lines() -> None:
    assert sorted(WHERE) == sorted(path.name for path in REAL.glob("*.log"))
    lines = [line for name in WHERE for line in real_lines(name)]
    assert len(lines) >= 15
    assert [len(real_lines(name)) for name in WHERE] == [len(where) for where in WHERE.values()]
    assert any(b'"uid":""' in line for line in lines)
    assert any(b'\\"' in line for line in lines)
    assert any(b"watchdog-files/" in line for line in lines)
    assert any(not line.startswith(b"{") for line in lines)


@pytest.mark.parametrize("name", sorted(WHERE))
def test_real_lines_go_to_exactly_their_vm(name: str) -> None:
    matcher = VmMatcher(NODE)
    got = [matcher.match(line) for line in real_lines(name)]
    assert got == [() if vm is None else (NODE.index(vm),) for vm in WHERE[name]]


def test_real_lines_through_the_splitter_with_kubelet_timestamps() -> None:
    lines = [
        (line, vm) for name in sorted(WHERE) for line, vm in zip(real_lines(name), WHERE[name], strict=True)
    ]
    log = b"".join(stamped(offset, line.decode()) for offset, (line, _) in enumerate(lines, start=1))
    splitter = HandlerSplitter(NODE, [Cursor(BASE)] * len(NODE), block_bytes=300)
    out: dict[int, bytes] = defaultdict(bytes)
    for i in range(0, len(log), 77):
        for index, kept in splitter.feed(log[i : i + 77]).items():
            out[index] += kept
    for index, kept in splitter.finish().items():
        out[index] += kept
    for index, vm in enumerate(NODE):
        expected = [
            stamped(offset, line.decode()) for offset, (line, owner) in enumerate(lines, 1) if owner == vm
        ]
        assert out[index] == b"".join(expected), vm


def test_a_bare_name_two_vms_of_the_node_share_goes_nowhere_and_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    twin = VmIdentity("other", TESTVMI.name, "0d0d0d0d-0d0d-4d0d-8d0d-0d0d0d0d0d0d")
    matcher = VmMatcher([TESTVMI, twin])
    bare, watchdog = real_lines("kubevirt-pr-1731.log")[2], real_lines("kubevirt-pr-1731.log")[1]
    with caplog.at_level(logging.DEBUG, logger="stats_log_collector.logs_collector.handler_split"):
        assert matcher.match(bare) == ()
        assert matcher.match(bare) == ()
    assert matcher.ambiguous_lines == 2
    assert len([r for r in caplog.records if "several VMs" in r.getMessage()]) == 1  # logged once
    assert matcher.match(watchdog) == (0,)  # namespace_name still names one of them
    splitter = HandlerSplitter([TESTVMI, twin], [Cursor(BASE), Cursor(BASE)])
    splitter.feed(stamped(1, bare.decode()) + stamped(2, watchdog.decode()))
    assert splitter.finish() == {0: stamped(2, watchdog.decode())}
    assert splitter.ambiguous_lines == 1


def test_namespace_slash_name_is_not_a_same_named_vm_of_another_namespace() -> None:
    # only default/vgpu is on this node; a line about other/vgpu (elsewhere) is not about it
    matcher = VmMatcher([VGPU])
    assert matcher.match(klog_line("Processing event other/vgpu").encode()) == ()
    assert matcher.match(klog_line("Processing event default/vgpu").encode()) == (0,)
    assert matcher.match(klog_line("watchdog-files/other_vgpu expired").encode()) == ()
    assert matcher.match(klog_line("/var/run/kubevirt/watchdog-files/default_vgpu.").encode()) == (0,)
    assert matcher.match(klog_line("vgpu started").encode()) == (0,)
