"""The caches' slim objects: what the models, the plan and the triggers read is all still there."""

from __future__ import annotations

import asyncio
import copy
import sys
from typing import Any

import pytest

from kubevirt_test_cluster import KubeVirtCluster
from stats_log_collector.kube import KubeClient, Pod, Vmi
from stats_log_collector.kube.retry import RetryPolicy
from stats_log_collector.logs_collector.inventory import Caches, slim_pod, slim_vmi
from stats_log_collector.logs_collector.triggers import what_now
from stats_log_collector.settings import KubeSettings
from tests.helpers import until

FAST = RetryPolicy(retries=1, base_delay=0.01, max_delay=0.05)


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
    return (pod, pod.labels, pod.owners, pod.created, pod.init_containers, pod.sidecars)


def test_slim_objects_parse_to_the_same_models_and_triggers(kubevirt_cluster: KubeVirtCluster) -> None:
    pods, vmis = objects(kubevirt_cluster)
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
    assert (parsed, parsed.nodes, parsed.labels, parsed.hostname) == (
        original,
        original.nodes,
        original.labels,
        original.hostname,
    )
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


async def test_the_caches_keep_slim_objects_from_lists_and_watch_events(
    kubevirt_cluster: KubeVirtCluster,
) -> None:
    vmi = kubevirt_cluster.add_vmi("vms", "vm-1", "node-1")
    kubevirt_cluster.add_launcher_pod(vmi)
    kubevirt_cluster.add_handler_pod("node-1")
    settings = KubeSettings(kube_api_url=kubevirt_cluster.url, kube_request_timeout_secs=5.0, kube_retries=1)
    client = await KubeClient.connect(settings, FAST)
    caches = Caches.of(client, ["vms"], "kubevirt", policy=FAST, min_watch_timeout=2.0)
    halt = asyncio.Event()
    tasks = [asyncio.create_task(cache.run(halt)) for cache in caches.all]
    try:
        await caches.wait_synced()
        listed = caches.launcher_pods.snapshot()[0]
        kubevirt_cluster.add_launcher_pod(vmi, node="node-2")  # a watch event
        await until(lambda: len(caches.launcher_pods) == 2, "the new pod")
        for pod in caches.launcher_pods.snapshot() + caches.handler_pods.snapshot():
            assert set(pod) == {"metadata", "spec", "status"} and "image" not in repr(pod)
        assert "domain" not in repr(caches.vmis.snapshot()[0]["spec"])
        inventory = caches.inventory()
        assert [v.name for v in inventory.vmis] == ["vm-1"] and list(inventory.handlers) == ["node-1"]
        assert listed["metadata"]["name"] in {p.name for p in inventory.launcher_pods}
    finally:
        halt.set()
        await asyncio.gather(*tasks)
        await client.close()
