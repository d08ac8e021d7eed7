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
from stats_log_collector.memstat.vm_figures import VmMemory, vm_figures

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
    helper = Sample(NOW, "default", "vm1", "virt-launcher-vm1-x", "node1", "procfs", "virtqemud", 7, 20 << 20)
    other = Sample(NOW, "a", "vm0", "virt-launcher-vm0-y", "node2", "procfs", "qemu-kvm", 9, 300 << 20)
    samples = [qemu, helper, other]
    memory = {("default", "vm1"): VmMemory(160 << 20, 400 << 20, 500 << 20)}
    state.publish(samples, 0.25, 1, 0, vm_figures(samples, memory))
    status, kind, body = await fetch(server, "/api/vms")
    assert status == 200 and kind.startswith("application/json")
    first, row = json.loads(body)  # sorted by namespace, then VM
    assert first["vm"] == "vm0" and first["guest_memory_bytes"] is None and first["overhead_bytes"] is None
    assert {key: row[key] for key in ("namespace", "vm", "pod", "node", "source", "timestamp")} == {
        "namespace": "default",
        "vm": "vm1",
        "pod": "virt-launcher-vm1-x",
        "node": "node1",
        "source": "procfs",
        "timestamp": "2026-11-23T10:00:05.250000Z",
    }
    assert row["guest_memory_bytes"] == 160 << 20 and row["measured_bytes"] == 235 << 20
    assert row["overhead_bytes"] == 75 << 20 and row["headroom_bytes"] == 265 << 20
    assert row["memory_request_bytes"] == 400 << 20 and row["memory_limit_bytes"] == 500 << 20
    assert row["requested_overhead_bytes"] == 240 << 20
    assert [(p["process"], p["pid"], p["rss_bytes"]) for p in row["processes"]] == [
        ("qemu-kvm", 42, 215 << 20),
        ("virtqemud", 7, 20 << 20),
    ]
    assert (
        row["processes"][0]["timestamp"] == "2026-11-23T10:00:05.250000Z" and "vm" not in row["processes"][0]
    )
    _, _, text = await fetch(server, "/metrics")
    assert (
        b'memstat_rss_bytes{namespace="default",node="node1",pod="virt-launcher-vm1-x",process="qemu-kvm",vm="vm1"}'
        in text
    )
    vm = b'{namespace="default",node="node1",vm="vm1"}'
    assert b"memstat_vm_guest_memory_bytes" + vm + b" 1.6777216e+08" in text
    assert b"memstat_vm_measured_bytes" + vm + b" 2.4641536e+08" in text
    assert b"memstat_vm_overhead_bytes" + vm + b" 7.86432e+07" in text
    assert b"memstat_vm_memory_limit_bytes" + vm + b" 5.24288e+08" in text
    assert b"memstat_vm_headroom_bytes" + vm + b" 2.7787264e+08" in text
    assert b"memstat_vm_memory_request_bytes" + vm + b" 4.194304e+08" in text
    assert b"memstat_vm_requested_overhead_bytes" + vm + b" 2.5165824e+08" in text
    assert b'memstat_vm_guest_memory_bytes{namespace="a"' not in text  # unknown: no series
    state.publish([other], 0.25, 0, 0, vm_figures([other], {}))  # vm1 went: its series go with it
    _, _, text = await fetch(server, "/metrics")
    assert (
        b'vm="vm1"' not in text and b'memstat_vm_measured_bytes{namespace="a",node="node2",vm="vm0"}' in text
    )
    state.publish(samples, 0.25, 1, 0, vm_figures(samples, memory))
    _, _, text = await fetch(server, "/metrics")
    assert b"memstat_poll_failures_total 2.0" in text and b"memstat_poll_duration_seconds 0.25" in text


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
