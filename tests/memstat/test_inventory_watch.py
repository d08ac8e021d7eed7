"""memstat's VMs come from watches: new VMs sampled, deleted ones dropped, through dropped watches and
410 Gone, with no VMI or pod list per poll (the test cluster's request journal says so)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kubevirt_test_cluster import KubeVirtCluster, VmiRef
from kubevirt_test_cluster.resources import by_kind
from stats_log_collector.kube import KubeClient, KubeUnavailable
from stats_log_collector.memstat.inventory import Inventory
from stats_log_collector.memstat.kubelet_source import KubeletSource
from tests.helpers import http, until, wait_for

AT = datetime(2026, 1, 1, tzinfo=UTC)
VMIS = "/apis/kubevirt.io/v1/namespaces/vms/virtualmachineinstances"
PODS = "/api/v1/namespaces/vms/pods"
MiB = 1024 * 1024


def add_vm(cluster: KubeVirtCluster, name: str, node: str) -> VmiRef:
    vmi = cluster.add_vmi("vms", name, node)
    pod = cluster.add_launcher_pod(vmi)
    cluster.set_container_memory("vms", pod.name, "compute", 300 * MiB, 320 * MiB)
    return vmi


def delete_vm(cluster: KubeVirtCluster, vmi: VmiRef) -> None:
    for pod in cluster.launcher_pods(vmi):
        cluster.delete_pod("vms", pod["metadata"]["name"])
    vmi_type = by_kind("kubevirt.io/v1", "VirtualMachineInstance")
    cluster.call(lambda api: api.store.delete(vmi_type, "vms", vmi.name))


def lists(cluster: KubeVirtCluster) -> list[str]:
    """The VMI and pod list requests (watches left out)."""
    return [r.path for r in cluster.requests() if r.path in (VMIS, PODS) and r.param("watch") != "true"]


async def sampled(source: KubeletSource) -> set[str]:
    return {sample.vm for sample in await source.poll(AT)}


async def eventually_sampled(source: KubeletSource, expected: set[str]) -> None:
    """Poll until the VMs sampled are ``expected`` (watch events arrive a moment after a change)."""
    found: set[str] = set()
    for _ in range(250):
        if (found := await sampled(source)) == expected:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"sampled {sorted(found)}, expected {sorted(expected)}")


async def test_vms_follow_the_cluster_through_drops_and_410_without_a_list_per_poll(
    kubevirt_cluster: KubeVirtCluster, client: KubeClient, inventory: Callable[..., Any]
) -> None:
    cluster = kubevirt_cluster
    cluster.add_namespace("vms")
    for node in ("node1", "node2"):
        cluster.add_node(node)
    first, second = add_vm(cluster, "first", "node1"), add_vm(cluster, "second", "node2")
    vms: Inventory = await inventory(["vms"])
    source = KubeletSource(client, vms)
    assert await sampled(source) == {"first", "second"}
    cluster.clear_requests()

    add_vm(cluster, "added", "node1")  # after start
    await eventually_sampled(source, {"first", "second", "added"})
    delete_vm(cluster, second)  # a VM gone: no longer sampled, not even once stale
    await eventually_sampled(source, {"first", "added"})

    cluster.drop_watches()  # an API server restart
    add_vm(cluster, "during-drop", "node2")
    await eventually_sampled(source, {"first", "added", "during-drop"})
    assert all(cache.lists == 1 for cache in vms.caches)

    # 410: the reconnection waits while VMs change and the history is compacted
    for path in (VMIS, PODS):
        cluster.inject_timeout(f"^{path}$", 1.0, query_regex="watch=true")
    cluster.drop_watches()
    delete_vm(cluster, first)
    add_vm(cluster, "after-410", "node1")
    cluster.compact()
    await until(lambda: all(cache.relists_410 == 1 for cache in vms.caches), "the 410 relists")
    await eventually_sampled(source, {"added", "during-drop", "after-410"})

    # every list made was a cache's: none per poll
    assert sorted(lists(cluster)) == sorted([VMIS, PODS])
    cluster.clear_requests()
    for _ in range(5):
        assert await sampled(source) == {"added", "during-drop", "after-410"}
    assert lists(cluster) == []
    assert {r.path for r in cluster.requests() if r.param("watch") != "true"} == {
        "/api/v1/nodes/node1/proxy/stats/summary",
        "/api/v1/nodes/node2/proxy/stats/summary",
    }


async def test_a_poll_before_the_first_lists_waits_for_them_bounded(
    kubevirt_cluster: KubeVirtCluster, client: KubeClient
) -> None:
    kubevirt_cluster.add_namespace("vms")
    kubevirt_cluster.add_node("node1")
    add_vm(kubevirt_cluster, "vm", "node1")
    kubevirt_cluster.inject(f"^{VMIS}$", 503, times=None)
    vms = Inventory(client, ["vms"], sync_timeout=0.5)
    stop = asyncio.Event()
    running = asyncio.create_task(vms.run(stop))
    source = KubeletSource(client, vms)
    with pytest.raises(KubeUnavailable, match=r"^virtualmachineinstances not listed yet after 0\.5 s$"):
        await source.poll(AT)
    kubevirt_cluster.clear_faults()
    assert await eventually(source) == {"vm"}  # the next poll, once the VMIs are listed
    stop.set()
    await running


async def eventually(source: KubeletSource) -> set[str]:
    """The VMs of the first poll that finds the inventory synced."""
    for _ in range(100):
        try:
            return await sampled(source)
        except KubeUnavailable:
            await asyncio.sleep(0.05)
    raise AssertionError("never synced")


def test_the_memstat_process_lists_once_and_then_only_reads_summaries(
    memstat: Any, kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=2, vms_per_namespace=3, log_lines=0)
    kubeconfig = kubevirt_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    process, port = memstat(KUBECONFIG=str(kubeconfig), NAMESPACE="vms")
    summaries = lambda: sum("stats/summary" in r.path for r in kubevirt_cluster.requests())  # noqa: E731
    wait_for(lambda: summaries() >= 2 * 4, "four polls")
    assert sorted(lists(kubevirt_cluster)) == sorted([VMIS, PODS])
    add_vm(kubevirt_cluster, "late", population.nodes[0])
    wait_for(lambda: b",late," in http(port, "/mem-stats.csv")[1], "the VM added after start in the CSV")
    assert sorted(lists(kubevirt_cluster)) == sorted([VMIS, PODS])
    metrics = http(port, "/metrics")[1].decode()
    assert 'memstat_watch_lists_total{objects="virtualmachineinstances"} 1.0' in metrics
    assert f'memstat_watch_objects{{objects="launcher pods"}} {len(population.vmis) + 1}.0' in metrics
    assert 'memstat_watch_synced{objects="virtualmachineinstances"} 1.0' in metrics
    assert 'memstat_watch_events_total{objects="virtualmachineinstances"}' in metrics
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


async def test_the_procfs_inventory_watches_only_its_nodes_launcher_pods(
    kubevirt_cluster: KubeVirtCluster, client: KubeClient, inventory: Callable[..., Any]
) -> None:
    kubevirt_cluster.add_namespace("vms")
    for node in ("node1", "node2"):
        kubevirt_cluster.add_node(node)
    add_vm(kubevirt_cluster, "here", "node1")
    add_vm(kubevirt_cluster, "there", "node2")
    pods: Inventory = await inventory(["vms"], node="node1", vmis=False)
    assert [pod.labels["vm.kubevirt.io/name"] for pod in await pods.launcher_pods()] == ["here"]
    add_vm(kubevirt_cluster, "also-here", "node1")
    add_vm(kubevirt_cluster, "also-there", "node2")

    async def names() -> list[str]:
        return sorted(pod.labels["vm.kubevirt.io/name"] for pod in await pods.launcher_pods())

    for _ in range(250):
        if await names() == ["also-here", "here"]:
            break
        await asyncio.sleep(0.02)
    assert await names() == ["also-here", "here"]
    asked = [r for r in kubevirt_cluster.requests() if r.path == PODS]
    assert asked and {r.param("fieldSelector") for r in asked} == {"spec.nodeName=node1"}
    assert not any("virtualmachineinstances" in r.path for r in kubevirt_cluster.requests())


async def test_an_object_no_model_can_be_made_of_fails_alone(
    kubevirt_cluster: KubeVirtCluster, client: KubeClient, inventory: Callable[..., Any]
) -> None:
    kubevirt_cluster.add_namespace("vms")
    kubevirt_cluster.add_node("node1")
    add_vm(kubevirt_cluster, "fine", "node1")
    broken = add_vm(kubevirt_cluster, "broken", "node1")
    [pod] = kubevirt_cluster.launcher_pods(broken)
    pods = by_kind("v1", "Pod")

    def spoil(api: Any) -> None:  # a creation time that is not a string: Pod.from_json raises
        current = api.store.require(pods, "vms", pod["metadata"]["name"])
        api.store.put(pods, {**current, "metadata": {**current["metadata"], "creationTimestamp": 5}})

    kubevirt_cluster.call(spoil)
    vms: Inventory = await inventory(["vms"])
    source = KubeletSource(client, vms)
    assert await sampled(source) == {"fine"}
    assert vms.bad_objects == 1
