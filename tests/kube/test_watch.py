"""ObjectCache against the test cluster: list, watch, resume, bookmarks, 410, nothing missed or repeated."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from kubevirt_test_cluster import KubeVirtCluster
from stats_log_collector.kube import KubeClient, ObjectCache
from stats_log_collector.kube.retry import RetryPolicy
from stats_log_collector.settings import KubeSettings
from tests.helpers import until

FAST = RetryPolicy(retries=3, base_delay=0.01, max_delay=0.05)
VMIS = "/apis/kubevirt.io/v1/namespaces/vms/virtualmachineinstances"
PODS = "/api/v1/namespaces/vms/pods"


@pytest.fixture
def cluster(kubevirt_cluster: KubeVirtCluster) -> KubeVirtCluster:
    for namespace in ("vms", "other"):
        kubevirt_cluster.add_namespace(namespace)
    for node in ("node1", "node2"):
        kubevirt_cluster.add_node(node)
    return kubevirt_cluster


@pytest.fixture
async def client(cluster: KubeVirtCluster) -> AsyncIterator[KubeClient]:
    settings = KubeSettings(kube_api_url=cluster.url, kube_request_timeout_secs=5.0, kube_retries=3)
    kube = await KubeClient.connect(settings, FAST)
    yield kube
    await kube.close()


def record_changes(cache: ObjectCache) -> list[tuple[str, str]]:
    """The cache's changes from now on, as (ADDED|MODIFIED|DELETED, name), in order."""
    changes: list[tuple[str, str]] = []

    def on_change(old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        kind = "ADDED" if old is None else "DELETED" if new is None else "MODIFIED"
        changes.append((kind, (new or old or {})["metadata"]["name"]))

    cache.subscribe(on_change)
    return changes


@dataclasses.dataclass
class Running:
    cache: ObjectCache
    changes: list[tuple[str, str]]  # (ADDED|MODIFIED|DELETED, name), in order
    stop: asyncio.Event
    task: asyncio.Task[None]

    def names(self) -> list[str]:
        return sorted(obj["metadata"]["name"] for obj in self.cache.snapshot())


@pytest.fixture
async def running() -> AsyncIterator[Callable[[ObjectCache], Any]]:
    started: list[Running] = []

    async def start(cache: ObjectCache) -> Running:
        changes = record_changes(cache)
        stop = asyncio.Event()
        run = Running(cache, changes, stop, asyncio.create_task(cache.run(stop)))
        started.append(run)
        async with asyncio.timeout(10):
            await cache.wait_synced()
        return run

    yield start
    for run in started:
        run.stop.set()
        await run.task


def watch_requests(cluster: KubeVirtCluster, path: str) -> list[dict[str, str | None]]:
    return [
        {name: record.param(name) for name in ("resourceVersion", "allowWatchBookmarks", "timeoutSeconds")}
        for record in cluster.requests()
        if record.path == path and record.param("watch") == "true"
    ]


def list_requests(cluster: KubeVirtCluster, path: str) -> int:
    return sum(1 for r in cluster.requests() if r.path == path and r.param("watch") is None)


async def test_lists_once_then_follows_changes_in_order(
    cluster: KubeVirtCluster, client: KubeClient, running: Callable[[ObjectCache], Any]
) -> None:
    vm1 = cluster.add_vmi("vms", "vm1", "node1")
    cluster.add_vmi("other", "elsewhere", "node1")  # another namespace: not watched
    run: Running = await running(client.vmi_cache(["vms"], policy=FAST))
    assert run.names() == ["vm1"] and run.cache.synced
    assert run.changes == [("ADDED", "vm1")]

    cluster.add_vmi("vms", "vm2", "node2")
    cluster.start_migration(vm1, "node2")
    cluster.call(lambda api: api.store.delete(_vmi_type(), "vms", "vm2"))
    await until(lambda: ("DELETED", "vm2") in run.changes)
    collapsed = [change for i, change in enumerate(run.changes) if run.changes[i - 1 : i] != [change]]
    assert collapsed == [("ADDED", "vm1"), ("ADDED", "vm2"), ("MODIFIED", "vm1"), ("DELETED", "vm2")]
    assert run.names() == ["vm1"]
    [vm] = run.cache.snapshot()
    assert vm["status"]["migrationState"]["targetNode"] == "node2"
    assert list_requests(cluster, VMIS) == 1 and run.cache.lists == 1
    [first] = watch_requests(cluster, VMIS)
    assert first["allowWatchBookmarks"] == "true" and int(first["timeoutSeconds"] or 0) >= 300


async def test_a_dropped_watch_resumes_from_the_last_version(
    cluster: KubeVirtCluster, client: KubeClient, running: Callable[[ObjectCache], Any]
) -> None:
    cluster.add_vmi("vms", "vm1", "node1")
    run: Running = await running(client.vmi_cache(["vms"], policy=FAST))
    cluster.add_vmi("vms", "vm2", "node1")
    await until(lambda: len(run.changes) == 2)
    seen = cluster.resource_version
    assert cluster.drop_watches() == 1
    cluster.add_vmi("vms", "vm3", "node1")  # while no watch is open
    await until(lambda: len(run.changes) == 3)
    assert run.changes == [("ADDED", "vm1"), ("ADDED", "vm2"), ("ADDED", "vm3")]  # none twice
    watches = watch_requests(cluster, VMIS)
    assert len(watches) == 2 and watches[1]["resourceVersion"] == str(seen)
    assert run.cache.lists == 1 and run.cache.relists_410 == 0


async def test_a_watch_that_times_out_is_reopened_without_a_list(
    cluster: KubeVirtCluster, client: KubeClient, running: Callable[[ObjectCache], Any]
) -> None:
    cluster.add_vmi("vms", "vm1", "node1")
    run: Running = await running(client.vmi_cache(["vms"], policy=FAST, min_watch_timeout=1))
    await until(lambda: run.cache.watches >= 3, seconds=15)
    cluster.add_vmi("vms", "vm2", "node1")
    await until(lambda: len(run.changes) == 2)
    assert run.cache.lists == 1 and list_requests(cluster, VMIS) == 1
    assert run.changes == [("ADDED", "vm1"), ("ADDED", "vm2")]


async def test_bookmarks_move_the_resume_version_on(
    cluster: KubeVirtCluster, client: KubeClient, running: Callable[[ObjectCache], Any]
) -> None:
    cluster.set_bookmark_period(0.2)
    cluster.add_vmi("vms", "vm1", "node1")
    run: Running = await running(client.vmi_cache(["vms"], policy=FAST))
    cluster.add_vmi("other", "unwatched", "node1")  # moves the cluster's version, no event for us
    latest = cluster.resource_version
    await until(lambda: run.cache.bookmarks >= 1)
    cluster.drop_watches()
    await until(lambda: run.cache.watches == 2)
    assert watch_requests(cluster, VMIS)[1]["resourceVersion"] == str(latest)
    assert run.changes == [("ADDED", "vm1")]


async def test_410_lists_again_and_delivers_the_differences(
    cluster: KubeVirtCluster, client: KubeClient, running: Callable[[ObjectCache], Any]
) -> None:
    for name in ("stays", "goes", "changes"):
        cluster.add_vmi("vms", name, "node1")
    run: Running = await running(client.vmi_cache(["vms"], policy=FAST))
    run.changes.clear()
    cluster.inject_timeout(f"^{VMIS}$", 1.0)  # the reconnection waits while things change
    cluster.drop_watches()
    cluster.call(lambda api: api.store.delete(_vmi_type(), "vms", "goes"))
    cluster.add_vmi("vms", "new", "node2")
    cluster.call(lambda api: _touch_vmi(api, "changes"))
    cluster.compact()
    await until(lambda: run.cache.relists_410 == 1 and len(run.changes) == 3)
    assert sorted(run.changes) == [("ADDED", "new"), ("DELETED", "goes"), ("MODIFIED", "changes")]
    assert run.names() == ["changes", "new", "stays"]
    assert run.cache.lists == 2
    # the new watch starts from the new list's version: a later change arrives once
    cluster.add_vmi("vms", "later", "node1")
    await until(lambda: ("ADDED", "later") in run.changes)
    await asyncio.sleep(0.2)
    assert run.changes.count(("ADDED", "later")) == 1


async def test_an_http_410_on_the_watch_request_lists_again(
    cluster: KubeVirtCluster, client: KubeClient, running: Callable[[ObjectCache], Any]
) -> None:
    cluster.add_vmi("vms", "vm1", "node1")
    run: Running = await running(client.vmi_cache(["vms"], policy=FAST))
    cluster.inject(f"^{VMIS}$", 410, method="GET")
    cluster.drop_watches()
    await until(lambda: run.cache.relists_410 == 1 and run.cache.lists == 2)
    assert run.changes == [("ADDED", "vm1")]  # the relist found nothing new


async def test_launcher_pod_cache_selects_launchers_across_namespaces(
    cluster: KubeVirtCluster, client: KubeClient, running: Callable[[ObjectCache], Any]
) -> None:
    cluster.add_namespace("kubevirt")
    cluster.add_handler_pod("node1")
    vm1 = cluster.add_vmi("vms", "vm1", "node1")
    pod1 = cluster.add_launcher_pod(vm1)
    vm2 = cluster.add_vmi("other", "vm2", "node2")
    pod2 = cluster.add_launcher_pod(vm2)
    launchers: Running = await running(client.launcher_pod_cache(["*"], policy=FAST))
    handlers: Running = await running(client.handler_pod_cache("kubevirt", policy=FAST))
    assert launchers.names() == sorted([pod1.name, pod2.name])
    assert [obj["metadata"]["labels"]["kubevirt.io"] for obj in handlers.cache.snapshot()] == ["virt-handler"]
    two = await running(client.launcher_pod_cache(["vms", "other"], policy=FAST))
    assert two.names() == launchers.names()
    cluster.delete_pod("other", pod2.name)
    await until(lambda: launchers.names() == [pod1.name] and two.names() == [pod1.name])


async def test_a_continue_token_that_expires_restarts_the_list(
    cluster: KubeVirtCluster, client: KubeClient
) -> None:
    for index in range(1200):  # three pages of 500
        cluster.add_vmi("vms", f"vm{index:04}", "node1")
    # the second page waits while the history is compacted past the first page's version
    cluster.inject_timeout(f"^{VMIS}$", 1.0, query_regex="continue=")
    listing = asyncio.create_task(client.list_objects(VMIS))
    await until(lambda: any(r.param("continue") for r in cluster.requests()))
    cluster.add_vmi("vms", "late", "node1")
    cluster.compact()
    items, version = await listing
    assert len(items) == 1201 and version == str(cluster.resource_version)
    pages = [(r.param("continue") is not None, r.status) for r in cluster.requests() if r.path == VMIS]
    assert pages == [(False, 200), (True, 410), (False, 200), (True, 200), (True, 200)]


async def test_a_subscriber_that_raises_is_counted_and_the_cache_goes_on(
    cluster: KubeVirtCluster, client: KubeClient, running: Callable[[ObjectCache], Any]
) -> None:
    cache = client.vmi_cache(["vms"], policy=FAST)

    def broken(old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        raise RuntimeError("a bug in a subscriber")

    cache.subscribe(broken)
    cluster.add_vmi("vms", "vm1", "node1")
    run: Running = await running(cache)
    cluster.add_vmi("vms", "vm2", "node1")
    await until(lambda: run.names() == ["vm1", "vm2"])
    assert cache.callback_errors == 2 and run.changes == [("ADDED", "vm1"), ("ADDED", "vm2")]


def _vmi_type() -> Any:
    from kubevirt_test_cluster.resources import by_kind

    return by_kind("kubevirt.io/v1", "VirtualMachineInstance")


def _touch_vmi(api: Any, name: str) -> None:
    current = api.store.require(_vmi_type(), "vms", name)
    changed = {**current, "metadata": {**current["metadata"], "labels": {"touched": "yes"}}}
    api.store.update(_vmi_type(), current, changed)


async def test_a_refused_watch_falls_back_to_lists_after_each_backoff(
    cluster: KubeVirtCluster, client: KubeClient, running: Callable[[ObjectCache], Any]
) -> None:
    cluster.inject(f"^{VMIS}$", 403, method="GET", times=None, query_regex="watch=true")
    cluster.add_vmi("vms", "vm1", "node1")
    run: Running = await running(client.vmi_cache(["vms"], policy=FAST))
    cluster.add_vmi("vms", "vm2", "node1")
    await until(lambda: run.names() == ["vm1", "vm2"], "the second VMI, from a list")
    assert run.cache.watches == 0 and run.cache.lists >= 2
    assert run.changes == [("ADDED", "vm1"), ("ADDED", "vm2")]
