"""Parsing API objects into the typed values the components use."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stats_log_collector.kube import match_launcher_pods
from stats_log_collector.kube.models import (
    INIT,
    REGULAR,
    SIDECAR,
    Pod,
    Vmi,
    format_time,
    label_selector,
    parse_time,
)


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


FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def test_a_real_v1_6_launcher_pod_has_guest_console_log_as_a_native_sidecar() -> None:
    pod = Pod.from_json(fixture("virt-launcher-v1.6.0-init.json"))  # kubevirt/kubevirt#15586
    assert pod.problems == ()
    assert pod.containers == ("compute",)
    assert pod.init_containers == ("guest-console-log", "container-disk-binary", "volumecontainerdisk-init")
    assert pod.sidecars == {"guest-console-log"}
    assert [pod.kind_of(name) for name in ("compute", "guest-console-log", "container-disk-binary")] == [
        REGULAR,
        SIDECAR,
        INIT,
    ]
    state = pod.state("guest-console-log")
    assert state is not None and state.restart_count == 0 and not state.running and not state.terminated
    assert pod.state("compute") is None  # no status yet: the pod is initialising


def test_the_name_label_holds_the_sanitized_hostname_not_the_vmi_name() -> None:
    pod = Pod.from_json(fixture("virt-launcher-dotted-name.json"))  # kubevirt/kubevirt#11309
    uid = "dcf7c2a7-311d-416d-b4bb-fa98007e2492"
    vmi = Vmi.from_json({"metadata": {"name": "cen7.9", "namespace": "default", "uid": uid}})
    assert vmi.launcher_hostname == "cen7" == pod.labels["vm.kubevirt.io/name"]
    assert match_launcher_pods(vmi, [pod]) == [pod]
    # the created-by label edited away: the name label, the namespace and the owner still match
    unlabelled = dataclasses.replace(
        pod, labels={k: v for k, v in pod.labels.items() if "created-by" not in k}
    )
    assert match_launcher_pods(vmi, [unlabelled]) == [unlabelled]
    # ... but not without the owner reference, nor in another namespace, nor for another VMI "cen7"
    assert match_launcher_pods(vmi, [dataclasses.replace(unlabelled, owners=())]) == []
    assert match_launcher_pods(vmi, [dataclasses.replace(unlabelled, namespace="other")]) == []
    cen7 = Vmi.from_json({"metadata": {"name": "cen7", "namespace": "default", "uid": "another"}})
    assert match_launcher_pods(cen7, [pod, unlabelled]) == []


def test_spec_hostname_names_the_launcher_pods() -> None:
    vmi = Vmi.from_json({"metadata": {"name": "vm.a", "uid": "u"}, "spec": {"hostname": "web"}})
    assert vmi.launcher_hostname == "web"
    assert Vmi.from_json({"metadata": {"name": "x" * 70 + ".b"}}).launcher_hostname == "x" * 63


def launcher_with(spec: Any, status: Any) -> Pod:
    return Pod.from_json({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec, "status": status})


def test_odd_shapes_are_reported_never_raised() -> None:
    compute = [{"name": "compute"}]
    assert launcher_with({"containers": compute, "initContainers": None}, None).problems == ()
    stray = launcher_with(
        {"containers": compute}, {"containerStatuses": [{"name": "ghost", "restartCount": 3}]}
    )
    assert stray.container_states == () and stray.restart_count("ghost") == 0
    assert stray.problems == ("containerStatuses has a status for 'ghost', which the spec does not have",)
    nameless = launcher_with({"containers": compute}, {"initContainerStatuses": [{"restartCount": 1}]})
    assert nameless.problems == ("initContainerStatuses has a status without a name",)
    odd = launcher_with(
        {"containers": compute, "initContainers": [{"name": "x", "restartPolicy": "Sometimes"}]}, {}
    )
    assert odd.init_containers == () and odd.kind_of("x") is None
    assert odd.problems == ("init container 'x' has an unknown restartPolicy 'Sometimes'",)
    rules = launcher_with(
        {"containers": compute, "initContainers": [{"name": "y", "restartPolicy": "Never"}]}, {}
    )
    assert rules.kind_of("y") == INIT and rules.problems == ()  # per-container restart rules (KEP-5307)
    garbage = launcher_with("not a spec", {"containerStatuses": "nope", "initContainerStatuses": [1]})
    assert garbage.containers == () and garbage.problems == (
        "containerStatuses is not a list",
        "initContainerStatuses has an entry that is not an object",
    )
    negative = launcher_with(
        {"containers": compute}, {"containerStatuses": [{"name": "compute", "restartCount": -2}]}
    )
    assert negative.restart_count("compute") == 0


# --- memory: the VMI's guest memory, the pod's request and limit ------------------------------------


def _vmi_with_domain(domain: object) -> Vmi:
    return Vmi.from_json({"metadata": {"name": "a", "namespace": "vms"}, "spec": {"domain": domain}})


def test_guest_memory_is_memory_guest_else_the_limit_without_a_request_else_the_request() -> None:
    both = {"memory": {"guest": "1.5Gi"}, "resources": {"requests": {"memory": "2Gi"}}}
    assert _vmi_with_domain(both).guest_memory_bytes == 3 << 29
    assert (
        _vmi_with_domain({"resources": {"requests": {"memory": "512e6"}}}).guest_memory_bytes == 512_000_000
    )
    # The limit only when no request is set (KubeVirt's converter GetVirtualMemory).
    only_limit = {"resources": {"limits": {"memory": "768Mi"}}}
    assert _vmi_with_domain(only_limit).guest_memory_bytes == 768 << 20
    both_set = {"resources": {"requests": {"memory": "512Mi"}, "limits": {"memory": "768Mi"}}}
    assert _vmi_with_domain(both_set).guest_memory_bytes == 512 << 20
    bad_guest = {"memory": {"guest": "garbage"}, "resources": {"requests": {"memory": "1Gi"}}}
    assert _vmi_with_domain(bad_guest).guest_memory_bytes == 1 << 30
    for domain in (
        {},
        None,
        "x",
        {"memory": None, "resources": {"requests": None}},
        {"memory": {"guest": "12Q"}},
    ):
        assert _vmi_with_domain(domain).guest_memory_bytes is None
    assert Vmi.from_json({}).guest_memory_bytes is None


def _container(name: str, request: object = None, limit: object = None, **extra: object) -> dict[str, object]:
    resources: dict[str, object] = {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}
    if request is not None:
        resources["requests"] = {"memory": request}
    if limit is not None:
        resources["limits"] = {"memory": limit}
    return {"name": name, "resources": resources, **extra}


def _pod(spec: Mapping[str, object]) -> Pod:
    return Pod.from_json({"metadata": {"name": "p", "namespace": "vms"}, "spec": spec})


def test_pod_memory_sums_containers_and_sidecars_and_takes_the_largest_init_moment() -> None:
    pod = _pod(
        {
            "containers": [_container("compute", "1294Mi", "1400Mi")],
            "initContainers": [
                _container("guest-console-log", "35M", "60M", restartPolicy="Always"),
                _container("container-disk-binary", "1M", "40M"),
            ],
        }
    )
    assert pod.memory_request_bytes == (1294 << 20) + 35_000_000
    assert pod.memory_limit_bytes == (1400 << 20) + 60_000_000
    # An init container larger than everything that runs later sets the pod's figure, with the sidecars
    # started before it (not those after).
    big_init = _pod(
        {
            "containers": [_container("compute", "100Mi", "100Mi")],
            "initContainers": [
                _container("early", "10Mi", "10Mi", restartPolicy="Always"),
                _container("setup", "500Mi", "600Mi"),
                _container("late", "20Mi", "20Mi", restartPolicy="Always"),
            ],
        }
    )
    assert big_init.memory_request_bytes == 510 << 20 and big_init.memory_limit_bytes == 610 << 20


def test_pod_memory_overhead_and_pod_level_resources() -> None:
    spec = {"containers": [_container("compute", "1Gi", "2Gi")], "overhead": {"memory": "120Mi"}}
    assert _pod(spec).memory_request_bytes == (1 << 30) + (120 << 20)
    spec["resources"] = {"requests": {"memory": "3Gi"}, "limits": {"memory": "4Gi"}}
    # The overhead is added to pod-level values as to summed ones (resource/helpers.go PodRequests).
    overhead = 120 << 20
    assert (_pod(spec).memory_request_bytes, _pod(spec).memory_limit_bytes) == (
        (3 << 30) + overhead,
        (4 << 30) + overhead,
    )


def test_a_pod_without_a_limit_on_every_container_has_none() -> None:
    # The test cluster's (and KubeVirt's default) launcher: only guest-console-log has a memory limit.
    one_missing = {
        "containers": [_container("compute", "1294Mi"), _container("guest-console-log", "35M", "60M")]
    }
    assert _pod(one_missing).memory_limit_bytes is None
    assert _pod(one_missing).memory_request_bytes == (1294 << 20) + 35_000_000
    zero = {"containers": [_container("compute", "1Gi", "0")]}  # a limit of 0 is no limit
    assert _pod(zero).memory_limit_bytes is None and _pod(zero).memory_request_bytes == 1 << 30
    init_without = {
        "containers": [_container("compute", "1Gi", "2Gi")],
        "initContainers": [_container("setup")],
    }
    assert _pod(init_without).memory_limit_bytes is None


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"containers": None},
        {"containers": "x"},
        {"containers": [{"name": "compute"}]},  # nothing declared
        {"containers": [_container("compute", "garbage", "garbage")]},
        {"containers": [_container("compute", "1Gi", "1Gi"), _container("b", "-1Gi", "-1Gi")]},
        {"containers": [{"name": "compute", "resources": "x"}]},
        {"containers": [{"name": "compute", "resources": {"requests": ["1Gi"], "limits": 5}}]},
    ],
)
def test_pod_memory_unknown(spec: dict[str, object]) -> None:
    pod = _pod(spec)
    assert pod.memory_request_bytes is None and pod.memory_limit_bytes is None
