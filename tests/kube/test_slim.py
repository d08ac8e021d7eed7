"""``kube.slim``: what the caches keep of a pod or VMI still makes the same models (memory figures
included) and the same logs-collector triggers, in a fraction of the memory."""

from __future__ import annotations

import copy
import sys
from typing import Any

import pytest

from kubevirt_test_cluster import KubeVirtCluster
from stats_log_collector.kube import Pod, Vmi
from stats_log_collector.kube.slim import slim_pod, slim_vmi
from stats_log_collector.logs_collector.triggers import what_now


def objects(cluster: KubeVirtCluster) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    vmi = cluster.add_vmi("vms", "vm-1", "node-1")
    pod = cluster.add_launcher_pod(vmi)
    cluster.start_migration(vmi, "node-2")
    cluster.restart_container("vms", pod.name, "guest-console-log")
    cluster.delete_pod("vms", pod.name, grace_period_seconds=30)
    pods = [p for p in cluster.launcher_pods(vmi)]
    stored = cluster.get_object("kubevirt.io/v1", "VirtualMachineInstance", "vms", "vm-1")
    assert stored is not None
    return pods, [stored]


def pod_fields(pod: Pod) -> tuple[Any, ...]:
    return (
        pod,
        pod.labels,
        pod.owners,
        pod.created,
        pod.init_containers,
        pod.sidecars,
        pod.memory_request_bytes,
        pod.memory_limit_bytes,
    )


def test_slim_objects_parse_to_the_same_models_and_triggers(kubevirt_cluster: KubeVirtCluster) -> None:
    pods, vmis = objects(kubevirt_cluster)
    assert all(Pod.from_json(pod).memory_request_bytes for pod in pods)  # the figures are compared
    for full in pods:
        slim = slim_pod(copy.deepcopy(full))
        assert pod_fields(Pod.from_json(slim)) == pod_fields(Pod.from_json(full))
        assert what_now(None, slim) == what_now(None, full)
        assert slim["metadata"]["resourceVersion"] == full["metadata"]["resourceVersion"]
        assert "deletionTimestamp" in slim["metadata"] or "deletionTimestamp" not in full["metadata"]
        assert len(repr(slim)) < len(repr(full)) / 2
    [vmi] = vmis
    slim_one = slim_vmi(copy.deepcopy(vmi))
    parsed, original = Vmi.from_json(slim_one), Vmi.from_json(vmi)
    assert (parsed, parsed.nodes, parsed.labels, parsed.hostname, parsed.guest_memory_bytes) == (
        original,
        original.nodes,
        original.labels,
        original.hostname,
        original.guest_memory_bytes,
    )
    assert original.guest_memory_bytes
    assert set(original.nodes) == {"node-1", "node-2"}


def test_keys_and_short_values_are_shared_between_objects(kubevirt_cluster: KubeVirtCluster) -> None:
    pods, _ = objects(kubevirt_cluster)
    first, second = (slim_pod(copy.deepcopy(pod)) for pod in pods)
    name_key = next(iter(first["metadata"]))
    assert name_key is next(iter(second["metadata"]))
    assert first["spec"]["containers"][0]["name"] is sys.intern("compute")


@pytest.mark.parametrize(
    "hostile",
    [
        None,
        7,
        {"metadata": "x"},
        {"metadata": {"name": "p"}, "spec": [], "status": {"containerStatuses": "x"}},
        {"metadata": {"name": "p"}, "status": {"initContainerStatuses": [None, {"state": "running"}]}},
    ],
)
def test_hostile_objects_are_kept_for_the_models_to_judge(hostile: Any) -> None:
    for slim in (slim_pod, slim_vmi):
        result = slim(copy.deepcopy(hostile))
        if isinstance(hostile, dict):
            Pod.from_json(result)
        else:
            assert result == hostile
