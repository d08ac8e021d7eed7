"""Early collections against the test cluster, with the real watch caches: a pod going, a migration
source finishing, restarts between runs, dropped watches and 410 Gone. Every line is numbered and the
exact lines per stream are compared (``Scenario.assert_exact``): none missing, none twice."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest

from stats_log_collector.kube import KubeClient
from stats_log_collector.kube.retry import RetryPolicy
from stats_log_collector.logs_collector.collector import Collector, RunSummary
from stats_log_collector.logs_collector.early import EarlyCollector
from stats_log_collector.logs_collector.inventory import Caches
from stats_log_collector.settings import KubeSettings
from tests.helpers import until
from tests.logs_collector.conftest import Scenario, collector_settings

FAST = RetryPolicy(retries=3, base_delay=0.01, max_delay=0.05)


@dataclasses.dataclass
class Watching:
    """A collector with its caches and early collections running, as the command runs them."""

    scenario: Scenario
    collector: Collector
    caches: Caches
    early: EarlyCollector

    async def hourly(self) -> RunSummary:
        """A run, once the caches show the cluster as it is now (the watch is asynchronous)."""
        await until(self._caught_up, "the caches caught up with the cluster")
        return await self.collector.run(self.caches.inventory())

    def _caught_up(self) -> bool:
        cluster = self.scenario.cluster
        wanted = [
            ("kubevirt.io/v1", "VirtualMachineInstance", self.caches.vmis, vmi.name)
            for vmi in self.scenario.vmis.values()
        ]
        wanted += [
            ("v1", "Pod", self.caches.launcher_pods, pod.name)
            for pods in self.scenario.pods.values()
            for pod in pods
        ]
        for api_version, kind, cache, name in wanted:
            stored = cluster.get_object(api_version, kind, "vms", name)
            cached = next((o for o in cache.snapshot() if o["metadata"]["name"] == name), None)
            versions = [(o or {}).get("metadata", {}).get("resourceVersion") for o in (stored, cached)]
            if versions[0] != versions[1]:
                return False
        return True

    async def settled(self, triggers: int) -> None:
        """Wait for the watch to bring ``triggers`` changes in all, then for their collections."""
        await until(lambda: self.early.counts.triggers >= triggers, f"{triggers} triggers")
        await self.early.idle()


@pytest.fixture
async def watching(scenario: Scenario) -> AsyncIterator[Watching]:
    kube = KubeSettings(kube_api_url=scenario.cluster.url, kube_request_timeout_secs=5.0, kube_retries=3)
    client = await KubeClient.connect(kube, FAST)
    collector = Collector(client, collector_settings(scenario.data_dir, COLLECT_CONCURRENCY="4"))
    collector.open()
    caches = Caches.of(client, ["vms"], "kubevirt", policy=FAST, min_watch_timeout=2.0)
    synced, halt = asyncio.Event(), asyncio.Event()
    early = EarlyCollector(collector, synced)
    caches.vmis.subscribe(early.on_vmi_change)
    caches.launcher_pods.subscribe(early.on_pod_change)
    tasks = [asyncio.create_task(cache.run(halt)) for cache in caches.all]
    await caches.wait_synced()
    synced.set()
    try:
        yield Watching(scenario, collector, caches, early)
    finally:
        await early.stop()
        halt.set()
        await asyncio.gather(*tasks)
        collector.close()
        await client.close()


def log_reads(scenario: Scenario, pod: str) -> int:
    return sum(1 for r in scenario.cluster.requests() if r.path.endswith(f"/pods/{pod}/log"))


async def delete_vmi(scenario: Scenario, name: str) -> None:
    url = f"{scenario.cluster.url}/apis/kubevirt.io/v1/namespaces/vms/virtualmachineinstances/{name}"
    async with aiohttp.ClientSession() as session, session.delete(url) as response:
        assert response.status == 200


async def test_a_pod_deleted_with_grace_is_in_the_folder_within_seconds_exactly_once(
    scenario: Scenario, watching: Watching
) -> None:
    scenario.vm("vm-1", "node-1")
    scenario.vm("vm-2", "node-1")
    for vm in ("vm-1", "vm-2"):
        scenario.launcher(vm, lines=5)
    scenario.handler("node-1", ["vm-1", "vm-2"])
    await watching.hourly()
    scenario.assert_exact()
    pod = scenario.pods["vm-1"][0]
    scenario.launcher("vm-1", lines=40)  # the half hour since the run
    triggers = watching.early.counts.triggers
    loop = asyncio.get_running_loop()
    began = loop.time()
    scenario.cluster.delete_pod("vms", pod.name, grace_period_seconds=180)  # what KubeVirt gives its pods
    await watching.settled(triggers + 1)
    assert loop.time() - began < 5
    scenario.assert_exact()
    assert watching.early.counts.collections == 1 and watching.early.counts.failed == 0
    scenario.launcher("vm-1", lines=3)  # the shutdown, within the grace period: read at the next change
    scenario.cluster.set_pod_phase("vms", pod.name, "Failed")
    await watching.settled(triggers + 2)
    scenario.assert_exact()
    assert watching.early.counts.closed_pods == 1
    scenario.handler("node-1", ["vm-1", "vm-2"])  # virt-handler's lines about the stop
    scenario.cluster.finish_deletion("vms", pod.name)  # the pod, its logs with it, are gone
    await delete_vmi(scenario, "vm-1")  # the VM stopped
    await watching.settled(triggers + 3)
    assert watching.early.counts.gone_unread == 0
    assert not [key for key in watching.collector.store.cursors if pod.name in key]  # forgotten
    scenario.launcher("vm-2", lines=2)
    scenario.cluster.clear_requests()
    await until(lambda: len(watching.caches.vmis) == 1, "the VMI gone from the cache")
    summary = await watching.hourly()  # the handler's last lines about vm-1, once
    assert not summary.failed_vms and log_reads(scenario, pod.name) == 0
    scenario.assert_exact()
    assert not [key for key in watching.collector.store.cursors if "/vm-1/" in key]
    scenario.handler("node-1", ["vm-2"])
    await watching.hourly()
    scenario.assert_exact()


async def test_migration_source_finishing_is_closed_and_both_pods_are_kept(
    scenario: Scenario, watching: Watching
) -> None:
    vmi = scenario.vm("vm-1", "node-1")
    scenario.launcher("vm-1")
    await watching.hourly()
    source = scenario.pods["vm-1"][0]
    target = scenario.cluster.start_migration(vmi, "node-2")
    scenario.pods["vm-1"].append(target)
    scenario.launcher("vm-1", lines=6, pod=source)
    scenario.launcher("vm-1", lines=4, pod=target)
    triggers = watching.early.counts.triggers
    scenario.cluster.set_pod_phase("vms", source.name, "Succeeded")  # the source virt-launcher exits
    await watching.settled(triggers + 1)
    assert watching.early.counts.closed_pods == 1
    scenario.launcher("vm-1", lines=4, pod=target)
    scenario.cluster.clear_requests()
    summary = await watching.hourly()  # the Completed source is still listed: not read, not missing
    assert not summary.failed_vms and log_reads(scenario, source.name) == 0
    assert log_reads(scenario, target.name) > 0
    scenario.assert_exact()


async def test_a_container_restarting_three_times_between_two_runs_keeps_all_four_runs(
    scenario: Scenario, watching: Watching
) -> None:
    scenario.vm("vm-1", "node-1")
    pod = scenario.pods["vm-1"][0]
    scenario.launcher("vm-1", lines=3)
    await watching.hourly()
    triggers = watching.early.counts.triggers
    for restart in range(1, 4):
        scenario.launcher("vm-1", lines=5)  # the end of the run about to die
        scenario.cluster.restart_container("vms", pod.name, "compute")
        scenario.cluster.restart_container("vms", pod.name, "guest-console-log")  # native sidecar
        await watching.settled(triggers + 2 * restart)
    scenario.launcher("vm-1", lines=5)
    summary = await watching.hourly()
    assert not summary.failed_vms and watching.early.counts.failed == 0
    scenario.assert_exact()


async def test_a_dropped_watch_and_410_gone_miss_nothing_and_repeat_nothing(
    scenario: Scenario, watching: Watching
) -> None:
    for name in ("vm-1", "vm-2", "vm-3"):
        scenario.vm(name, "node-1")
        scenario.launcher(name, lines=4)
    await watching.hourly()
    pods = {name: scenario.pods[name][0] for name in ("vm-1", "vm-2", "vm-3")}
    scenario.launcher("vm-1", lines=5)
    pod_cache = watching.caches.launcher_pods
    watches = pod_cache.watches
    assert scenario.cluster.drop_watches() > 0  # an API server restart
    scenario.cluster.restart_container("vms", pods["vm-1"].name, "compute")  # while nobody watches
    await until(lambda: pod_cache.watches > watches, "the watch reopened")
    await until(lambda: watching.early.counts.collections >= 1, "the restart collected")
    await watching.early.idle()
    compute = (pods["vm-1"].name, "compute")  # only the restarted container is read early
    assert scenario.collected("vm-1")[compute] == scenario.expected["vm-1"][compute]
    relists = pod_cache.relists_410
    scenario.launcher("vm-2", lines=5)
    scenario.launcher("vm-3", lines=5)
    scenario.cluster.drop_watches()
    scenario.cluster.set_pod_phase("vms", pods["vm-2"].name, "Failed")
    scenario.cluster.delete_pod("vms", pods["vm-3"].name, grace_period_seconds=60)
    scenario.cluster.compact()  # the version the watch resumes from is gone: 410, then a new list
    await until(lambda: pod_cache.relists_410 > relists, "a relist after 410")
    await until(lambda: watching.early.counts.collections >= 3, "both going pods collected")
    await watching.early.idle()
    scenario.assert_exact(["vm-2", "vm-3"])
    scenario.launcher("vm-1", lines=3)
    summary = await watching.hourly()
    assert not summary.failed_vms and watching.early.counts.failed == 0
    scenario.assert_exact()


async def test_an_hourly_read_and_an_early_one_of_the_same_pod_never_overlap(
    scenario: Scenario, watching: Watching
) -> None:
    scenario.vm("vm-1", "node-1")
    pod = scenario.pods["vm-1"][0]
    scenario.launcher("vm-1", lines=30)
    scenario.cluster.inject_timeout(rf"/pods/{pod.name}/log$", 1.0, times=2)  # the run reads slowly
    run = asyncio.create_task(watching.hourly())
    await until(lambda: log_reads(scenario, pod.name) >= 1, "the run reading the pod")
    triggers = watching.early.counts.triggers
    scenario.cluster.delete_pod("vms", pod.name, grace_period_seconds=30)  # going, mid-read
    await run
    await watching.settled(triggers + 1)
    scenario.assert_exact()
    # the run: 2 finished init containers and 2 streams; then the early collection: the 2 streams again,
    # from the cursors the run committed (it waited for the pod lock)
    assert log_reads(scenario, pod.name) == 6


async def test_hostile_pods_from_the_watch_fail_alone(scenario: Scenario, watching: Watching) -> None:
    scenario.vm("vm-1", "node-1")
    scenario.launcher("vm-1", lines=3)
    await watching.hourly()
    finished = {"status": {"phase": "Failed"}}
    hostile: list[dict[str, object]] = [
        {"metadata": None, **finished},
        {"metadata": {"namespace": "vms", "name": "p1"}, **finished},  # no VMI named
        {  # a VMI name that cannot be a folder
            "metadata": {
                "namespace": "vms",
                "name": "p2",
                "ownerReferences": [{"kind": "VirtualMachineInstance", "name": "..", "uid": "u"}],
                "labels": {"kubevirt.io/created-by": "u"},
            },
            **finished,
        },
        {  # a pod name that cannot be a file name, of a real VM; a spec of the wrong types
            "metadata": {
                "namespace": "vms",
                "name": "../../escape",
                "labels": {"kubevirt.io/created-by": scenario.vmis["vm-1"].uid},
            },
            "spec": {"containers": [{"name": "compute"}], "initContainers": "x"},
            **finished,
        },
    ]
    for obj in hostile:
        watching.early.on_pod_change(None, obj)
    await watching.early.idle()
    counts = watching.early.counts
    assert counts.unplaced == 2 and counts.failed == 1
    assert sorted(p.name for p in scenario.data_dir.parent.iterdir()) == ["data"]  # nothing escaped
    scenario.launcher("vm-1", lines=3)  # the rest goes on
    summary = await watching.hourly()
    assert not summary.failed_vms
    scenario.assert_exact()


async def test_a_burst_of_pods_going_at_once_is_bounded_by_the_read_slots(
    scenario: Scenario, watching: Watching
) -> None:
    names = [f"vm-{index}" for index in range(24)]
    for name in names:
        scenario.vm(name, f"node-{int(name[3:]) % 2 + 1}")
        scenario.launcher(name, lines=3)
    await watching.hourly()
    for name in names:
        scenario.launcher(name, lines=4)
    scenario.cluster.inject_timeout(r"/log$", 0.05, times=None)  # every read takes a while
    triggers = watching.early.counts.triggers
    for name in names:
        scenario.cluster.delete_pod("vms", scenario.pods[name][0].name, grace_period_seconds=120)
    await watching.settled(triggers + len(names))
    slots = watching.collector.slots
    assert slots.peak == slots.size == 4  # COLLECT_CONCURRENCY: 48 streams wanted, 4 read at once
    assert watching.early.counts.collections == len(names) and watching.early.counts.failed == 0
    scenario.assert_exact()
