"""ObjectCache against a server sending hostile watch streams: every bad line is counted, the cache
lists again and ends up equal to the server's list, and no good change is delivered twice.

The server is a real HTTP server (aiohttp on 127.0.0.1) scripted per watch connection, because the
test cluster, like kube-apiserver, never sends such lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from stats_log_collector.kube import KubeClient, ObjectCache
from stats_log_collector.kube.retry import RetryPolicy
from stats_log_collector.settings import KubeSettings
from tests.helpers import until as wait_for_async
from tests.kube.test_watch import record_changes

FAST = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.05)
PODS = "/api/v1/namespaces/vms/pods"


def pod(name: str, version: int, uid: str | None = None) -> dict[str, Any]:
    meta = {"name": name, "namespace": "vms", "uid": uid or f"uid-{name}", "resourceVersion": str(version)}
    return {"metadata": meta, "spec": {"nodeName": "node1"}}


def event(kind: str, obj: Any) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


@dataclass
class ScriptedServer:
    """Lists ``listed`` at ``version``; each watch connection writes its script, then stays open."""

    listed: list[dict[str, Any]]
    version: int
    scripts: list[list[bytes]] = field(default_factory=list)
    watches: list[dict[str, str]] = field(default_factory=list)
    lists: int = 0
    later: list[tuple[list[dict[str, Any]], int]] = field(default_factory=list)  # the next lists' answers

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.rstrip("/") == "/version":
            return web.json_response({"major": "1", "minor": "31", "gitVersion": "v1.31.0"})
        if request.query.get("watch") != "true":
            self.lists += 1
            if self.lists > 1 and self.later:
                self.listed, self.version = self.later.pop(0)
            return web.json_response(
                {"kind": "PodList", "metadata": {"resourceVersion": str(self.version)}, "items": self.listed}
            )
        self.watches.append(dict(request.query))
        script = self.scripts.pop(0) if self.scripts else []
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        for line in script:
            await response.write(line)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        return response


@pytest.fixture
async def server() -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def start(scripted: ScriptedServer) -> str:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", scripted.handle)
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def follow(url: str, until: Callable[[ObjectCache], bool]) -> tuple[ObjectCache, list[tuple[str, str]]]:
    settings = KubeSettings(kube_api_url=url, kube_request_timeout_secs=5.0, kube_retries=2)
    client = await KubeClient.connect(settings, FAST)
    cache = ObjectCache(client, "pods", [PODS], policy=FAST)
    changes = record_changes(cache)
    stop = asyncio.Event()
    task = asyncio.create_task(cache.run(stop))
    try:
        await wait_for_async(lambda: until(cache), "the cache")
    finally:
        stop.set()
        await task
        await client.close()
    return cache, changes


def names(cache: ObjectCache) -> list[str]:
    return sorted(obj["metadata"]["name"] for obj in cache.snapshot())


HOSTILE_LINES = {
    "not JSON": b'{"type": "ADDED", "object": {\n',
    "not an object": b'["ADDED", {}]\n',
    "no object": b'{"type": "ADDED"}\n',
    "object without metadata": event("ADDED", {"spec": {}}),
    "object without a name": event("MODIFIED", {"metadata": {"namespace": "vms", "name": 7}}),
    "unknown type": event("SNAPSHOT", pod("x", 12)),
    "huge line": b'{"type":"ADDED","object":{"metadata":{"name":"' + b"h" * (5 * 1024 * 1024) + b'"}}}\n',
}


@pytest.mark.parametrize("hostile", list(HOSTILE_LINES))
async def test_a_hostile_line_is_counted_and_the_cache_lists_again(
    server: Callable[..., Any], hostile: str
) -> None:
    scripted = ScriptedServer([pod("a", 10), pod("b", 10)], 10)
    scripted.scripts = [[event("ADDED", pod("c", 11)), HOSTILE_LINES[hostile]]]
    # the second list: c is gone, b changed, d is new (what the lost line may have said)
    scripted.later = [([pod("a", 10), pod("b", 13), pod("d", 13)], 13)]
    url = await server(scripted)
    cache, changes = await follow(url, lambda cache: cache.lists == 2 and cache.watches == 2)
    assert cache.bad_lines == 1
    assert names(cache) == ["a", "b", "d"]
    assert changes == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("ADDED", "c"),
        ("MODIFIED", "b"),
        ("ADDED", "d"),
        ("DELETED", "c"),
    ]
    assert scripted.watches[1]["resourceVersion"] == "13"


async def test_an_error_event_resumes_from_the_last_version(server: Callable[..., Any]) -> None:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": "etcd went away",
        "code": 500,
    }
    scripted = ScriptedServer([pod("a", 10)], 10)
    scripted.scripts = [
        [event("ADDED", pod("b", 11)), event("ERROR", status)],
        [event("DELETED", pod("a", 12))],
    ]
    url = await server(scripted)
    cache, changes = await follow(url, lambda cache: cache.events == 2)
    assert cache.error_events == 1 and cache.lists == 1 and cache.bad_lines == 0
    assert [w["resourceVersion"] for w in scripted.watches] == ["10", "11"]
    assert changes == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    assert names(cache) == ["b"]


async def test_a_410_error_event_lists_again(server: Callable[..., Any]) -> None:
    status = {"kind": "Status", "apiVersion": "v1", "reason": "Expired", "message": "too old", "code": 410}
    scripted = ScriptedServer([pod("a", 10)], 10)
    scripted.scripts = [[event("ERROR", status)]]
    url = await server(scripted)
    cache, changes = await follow(url, lambda cache: cache.lists == 2 and cache.watches == 2)
    assert cache.relists_410 == 1 and cache.error_events == 0
    assert changes == [("ADDED", "a")]


async def test_a_bookmark_moves_the_version_and_changes_nothing(server: Callable[..., Any]) -> None:
    scripted = ScriptedServer([pod("a", 10)], 10)
    bookmark = {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "40"}}
    scripted.scripts = [
        [event("BOOKMARK", bookmark), b"\n", event("ERROR", {"code": 503, "message": "later"})]
    ]
    url = await server(scripted)
    cache, changes = await follow(url, lambda cache: cache.watches == 2)
    assert cache.bookmarks == 1 and changes == [("ADDED", "a")]
    assert [w["resourceVersion"] for w in scripted.watches] == ["10", "40"]


async def test_a_recreated_object_is_deleted_then_added(server: Callable[..., Any]) -> None:
    scripted = ScriptedServer([pod("a", 10)], 10)
    scripted.scripts = [[event("MODIFIED", pod("a", 11, uid="another"))]]
    url = await server(scripted)
    cache, changes = await follow(url, lambda cache: cache.events == 1)
    assert changes == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "a")]
    assert cache.snapshot()[0]["metadata"]["uid"] == "another"


async def test_managed_fields_are_not_kept(server: Callable[..., Any]) -> None:
    heavy = pod("a", 10)
    heavy["metadata"]["managedFields"] = [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]
    scripted = ScriptedServer([heavy], 10)
    url = await server(scripted)
    cache, _ = await follow(url, lambda cache: cache.synced)
    assert "managedFields" not in cache.snapshot()[0]["metadata"]
