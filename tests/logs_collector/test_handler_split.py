"""Splitting a node's virt-handler log among its VMs, in one pass."""

from __future__ import annotations

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
    # a bare name shared by two namespaces on the node goes to both; never to vm-10
    assert set(matcher.match(klog_line("vm-1 is shutting down.").encode())) == {0, 2}
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
