"""Armed faults hit exactly the requests they target, and the journal records what happened."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from kubevirt_test_cluster import KubeVirtCluster, PodRef


@pytest.fixture
def launcher(kubevirt_cluster: KubeVirtCluster) -> PodRef:
    return kubevirt_cluster.add_launcher_pod(kubevirt_cluster.add_vmi("vms", "vm1", "node-1"))


async def test_status_fault_hits_the_next_matching_requests_only(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef
) -> None:
    fault = kubevirt_cluster.inject(r"/pods$", 500, times=1)
    kubevirt_cluster.clear_requests()
    url = kubevirt_cluster.url + "/api/v1/namespaces/vms/pods"
    async with aiohttp.ClientSession() as session:
        async with session.get(kubevirt_cluster.url + "/api/v1/nodes") as response:
            assert response.status == 200  # not matching
        async with session.get(url) as response:
            body = await response.json()
        assert response.status == 500
        assert body == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Internal error occurred: injected fault",
            "reason": "InternalError",
            "details": {"causes": [{"message": "injected fault"}]},
            "code": 500,
        }
        async with session.get(url) as response:
            assert response.status == 200
    assert fault.hits == 1
    assert [(r.method, r.path, r.status) for r in kubevirt_cluster.requests()] == [
        ("GET", "/api/v1/nodes", 200),
        ("GET", "/api/v1/namespaces/vms/pods", 500),
        ("GET", "/api/v1/namespaces/vms/pods", 200),
    ]


async def test_429_carries_retry_after(kubevirt_cluster: KubeVirtCluster, launcher: PodRef) -> None:
    kubevirt_cluster.inject("/log", 429, method="GET", times=2)
    url = f"{kubevirt_cluster.url}/api/v1/namespaces/vms/pods/{launcher.name}/log?container=compute"
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.get(url) as response:
                body = await response.json()
                assert (response.status, response.headers["Retry-After"]) == (429, "1")
                assert body["reason"] == "TooManyRequests" and body["details"]["retryAfterSeconds"] == 1
        async with session.get(url) as response:
            assert response.status == 200 and response.content_type == "text/plain"


async def test_method_filter_and_unlimited_faults(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef
) -> None:
    kubevirt_cluster.inject("/pods", 503, method="DELETE", times=None)
    url = f"{kubevirt_cluster.url}/api/v1/namespaces/vms/pods/{launcher.name}"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 200
        for _ in range(3):
            async with session.delete(url) as response:
                assert response.status == 503
                assert (await response.json())["reason"] == "ServiceUnavailable"
        kubevirt_cluster.clear_faults()
        async with session.delete(url) as response:
            assert response.status == 200


async def test_timeout_fault_hangs_before_answering(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef
) -> None:
    kubevirt_cluster.inject_timeout("/pods", 0.4, times=2)
    url = kubevirt_cluster.url + "/api/v1/namespaces/vms/pods"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(asyncio.TimeoutError):
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=0.1)):
                pass
        started = time.monotonic()
        async with session.get(url) as response:
            assert response.status == 200  # answered normally, only late
        assert time.monotonic() - started >= 0.35


async def test_drop_closes_the_connection_without_a_response(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef
) -> None:
    kubevirt_cluster.inject_drop("/pods")
    kubevirt_cluster.clear_requests()
    host, port = kubevirt_cluster.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /api/v1/namespaces/vms/pods HTTP/1.1\r\nHost: test\r\n\r\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, not a single byte of response
    writer.close()
    async with (
        aiohttp.ClientSession() as session,
        session.get(kubevirt_cluster.url + "/api/v1/namespaces/vms/pods") as response,
    ):
        assert response.status == 200  # the fault was spent
    assert [record.status for record in kubevirt_cluster.requests()] == [0, 200]


async def test_aiohttp_retries_a_dropped_get_once(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef
) -> None:
    """Worth knowing when counting calls: aiohttp silently re-sends an idempotent request after a drop."""
    kubevirt_cluster.inject_drop("/pods", times=2)
    kubevirt_cluster.clear_requests()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.get(kubevirt_cluster.url + "/api/v1/namespaces/vms/pods"):
                pass
    assert [record.status for record in kubevirt_cluster.requests()] == [0, 0]


async def test_vanish_after_list(kubevirt_cluster: KubeVirtCluster, launcher: PodRef) -> None:
    kubevirt_cluster.vanish_after_list("vms", launcher.name)
    base = f"{kubevirt_cluster.url}/api/v1/namespaces/vms/pods"
    async with aiohttp.ClientSession() as session:
        async with session.get(kubevirt_cluster.url + "/api/v1/nodes"):
            pass  # other lists do not trigger it
        async with session.get(base, params={"labelSelector": "kubevirt.io=virt-launcher"}) as response:
            listed = await response.json()
        assert [item["metadata"]["name"] for item in listed["items"]] == [launcher.name]
        for suffix in ("", "/log?container=compute", "/exec?command=ls&container=compute"):
            async with session.get(f"{base}/{launcher.name}{suffix}") as response:
                body = await response.json()
            assert (response.status, body["message"]) == (404, f'pods "{launcher.name}" not found')
        async with session.get(base) as response:
            assert (await response.json())["items"] == []


async def test_journal_records_queries(kubevirt_cluster: KubeVirtCluster, launcher: PodRef) -> None:
    kubevirt_cluster.clear_requests()
    url = f"{kubevirt_cluster.url}/api/v1/namespaces/vms/pods/{launcher.name}/log"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, params=[("container", "compute"), ("tailLines", "5")]) as response,
    ):
        await response.read()
    [record] = kubevirt_cluster.requests()
    assert record.query == {"container": ["compute"], "tailLines": ["5"]}
    assert (record.param("tailLines"), record.param("follow"), record.status) == ("5", None, 200)
    kubevirt_cluster.clear_requests()
    assert kubevirt_cluster.requests() == []
