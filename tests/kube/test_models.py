"""Parsing API objects into the typed values the components use."""

from __future__ import annotations

from datetime import UTC, datetime

from stats_log_collector.kube import match_launcher_pods
from stats_log_collector.kube.models import Pod, Vmi, format_time, label_selector, parse_time


def vmi_json(name="vm1", uid="u-1", node="node1", phase="Running"):
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "labels": {"kubevirt.io/nodeName": node}},
        "status": {"nodeName": node, "phase": phase},
    }


def pod_json(name, labels, created="2026-11-23T10:00:00Z", node="node1"):
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"pod-{name}",
            "labels": labels,
            "creationTimestamp": created,
        },
        "spec": {"nodeName": node, "containers": [{"name": "compute"}, {"name": "guest-console-log"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "compute", "restartCount": 2, "state": {"running": {}}},
                {"name": "guest-console-log", "restartCount": 0, "state": {"waiting": {}}},
            ],
        },
    }


def test_vmi_fields() -> None:
    vmi = Vmi.from_json(vmi_json())
    assert (vmi.namespace, vmi.name, vmi.uid, vmi.node, vmi.phase) == ("ns", "vm1", "u-1", "node1", "Running")


def test_vmi_being_scheduled_has_no_node() -> None:
    vmi = Vmi.from_json({"metadata": {"name": "vm", "namespace": "ns", "uid": "u"}})
    assert vmi.node is None and vmi.phase == "Unknown"


def test_pod_fields() -> None:
    pod = Pod.from_json(pod_json("p", {"kubevirt.io": "virt-launcher"}))
    assert pod.containers == ("compute", "guest-console-log")
    assert pod.restart_count("compute") == 2 and pod.restart_count("nope") == 0
    assert pod.container_states[0].running and not pod.container_states[1].running
    assert pod.created == datetime(2026, 11, 23, 10, tzinfo=UTC)


def test_match_launcher_pods_by_uid_then_name_active_first() -> None:
    vmi = Vmi.from_json(vmi_json())
    target = Pod.from_json(pod_json("a-new", {"kubevirt.io/created-by": "u-1"}, node="node2"))
    source = Pod.from_json(pod_json("old", {"kubevirt.io/created-by": "u-1"}, node="node1"))
    other = Pod.from_json(pod_json("x", {"kubevirt.io/created-by": "u-2", "vm.kubevirt.io/name": "vm1"}))
    assert [p.name for p in match_launcher_pods(vmi, [target, other, source])] == ["old", "a-new"]
    # another VMI's pod, even with this VMI's name in vm.kubevirt.io/name, is not this VMI's
    assert match_launcher_pods(vmi, [other]) == []


def test_time_helpers() -> None:
    moment = datetime(2026, 11, 23, 10, 0, 5, 123456, tzinfo=UTC)
    assert format_time(moment) == "2026-11-23T10:00:05Z"
    assert parse_time("2026-11-23T10:00:05Z") == moment.replace(microsecond=0)
    assert parse_time("garbage") is None and parse_time(None) is None
    assert label_selector({"a": "b", "c": "d"}) == "a=b,c=d"
