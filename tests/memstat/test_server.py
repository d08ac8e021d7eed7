"""memstat's HTTP server over a real socket: health, readiness, JSON API, metrics, dashboard assets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from stats_log_collector.memstat.sample import Sample
from stats_log_collector.memstat.server import build_app
from stats_log_collector.memstat.state import LiveState

NOW = datetime(2026, 11, 23, 10, 0, 5, 250000, tzinfo=UTC)


@pytest.fixture
def state() -> LiveState:
    return LiveState()


@pytest.fixture
async def server(state: LiveState, tmp_path: Path) -> AsyncIterator[TestServer]:
    (tmp_path / "logs").mkdir()
    test_server = TestServer(build_app(state, tmp_path / "logs"))
    await test_server.start_server()
    try:
        yield test_server
    finally:
        await test_server.close()


async def fetch(server: TestServer, path: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as session, session.get(server.make_url(path)) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.read()


async def test_ready_only_after_the_first_good_poll(server: TestServer, state: LiveState) -> None:
    assert (await fetch(server, "/healthz"))[0] == 200
    assert (await fetch(server, "/readyz"))[0] == 503
    state.publish([], 0.1, 0, 0)
    assert (await fetch(server, "/readyz"))[0] == 200


async def test_latest_samples_as_json_and_metrics(server: TestServer, state: LiveState) -> None:
    qemu = Sample(NOW, "default", "vm1", "virt-launcher-vm1-x", "node1", "procfs", "qemu-kvm", 42, 215 << 20)
    state.publish([qemu], 0.25, 1, 0)
    status, kind, body = await fetch(server, "/api/vms")
    assert status == 200 and kind.startswith("application/json")
    [row] = json.loads(body)
    assert (
        row["vm"] == "vm1"
        and row["rss_bytes"] == 215 << 20
        and row["timestamp"] == "2026-11-23T10:00:05.250000Z"
    )
    _, _, text = await fetch(server, "/metrics")
    assert (
        b'memstat_rss_bytes{namespace="default",node="node1",pod="virt-launcher-vm1-x",process="qemu-kvm",vm="vm1"}'
        in text
    )
    assert b"memstat_poll_failures_total 1.0" in text and b"memstat_poll_duration_seconds 0.25" in text


async def test_dashboard_and_its_vendored_assets(server: TestServer) -> None:
    status, kind, page = await fetch(server, "/dashboard")
    assert status == 200 and kind.startswith("text/html")
    assert (
        b'src="static/vendor/uPlot.iife.min.js"' in page
        and b"http" not in page.split(b"<body>")[1].split(b"</header>")[0]
    )
    status, _, script = await fetch(server, "/static/vendor/uPlot.iife.min.js")
    assert status == 200 and b"uPlot" in script and len(script) > 40_000
    assert (await fetch(server, "/static/dashboard.js"))[0] == 200
    assert (await fetch(server, "/static/../server.py"))[0] == 404
    assert (await fetch(server, "/static/nothing.js"))[0] == 404
