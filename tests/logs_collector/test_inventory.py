"""logs-collector's caches keep slim objects (``kube.slim``), from lists and from watch events."""

from __future__ import annotations

import asyncio

from kubevirt_test_cluster import KubeVirtCluster
from stats_log_collector.kube import KubeClient
from stats_log_collector.kube.retry import RetryPolicy
from stats_log_collector.logs_collector.inventory import Caches
from stats_log_collector.settings import KubeSettings
from tests.helpers import until

FAST = RetryPolicy(retries=1, base_delay=0.01, max_delay=0.05)


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
        # of the domain, only its memory: devices, disks, firmware are not kept
        assert set(caches.vmis.snapshot()[0]["spec"]["domain"]) <= {"memory", "resources"}
        inventory = caches.inventory()
        assert [v.name for v in inventory.vmis] == ["vm-1"] and list(inventory.handlers) == ["node-1"]
        assert listed["metadata"]["name"] in {p.name for p in inventory.launcher_pods}
    finally:
        halt.set()
        await asyncio.gather(*tasks)
        await client.close()
