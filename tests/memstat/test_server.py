"""memstat's HTTP server over a real socket: health, readiness, JSON API, metrics, dashboard assets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from stats_log_collector.memstat.sample import Sample
from stats_log_collector.memstat.series import RETENTION_SECS
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


async def test_one_vm_its_page_and_its_series(server: TestServer, state: LiveState) -> None:
    now = datetime.now(UTC)
    memory = {("default", "vm1"): VmMemory(160 << 20, 400 << 20, 500 << 20)}
    for seconds, grown in ((-10, 0), (0, 5 << 20)):
        at = now + timedelta(seconds=seconds)
        samples = [
            Sample(
                at,
                "default",
                "vm1",
                "virt-launcher-vm1-x",
                "node1",
                "procfs",
                "qemu-kvm",
                42,
                (215 << 20) + grown,
            ),
            Sample(at, "default", "vm1", "virt-launcher-vm1-x", "node1", "procfs", "virtqemud", 7, 20 << 20),
            Sample(at, "default", "vm1", "virt-launcher-vm1-x", "node1", "procfs", "virtqemud", 8, 1 << 20),
            # A VM whose name starts with the other's: never in its series.
            Sample(
                at, "default", "vm10", "virt-launcher-vm10-y", "node1", "procfs", "qemu-kvm", 9, 900 << 20
            ),
            Sample(at, "", "plain", "", "host", "procfs", "qemu-kvm", 3, 100 << 20),
        ]
        state.publish(samples, 0.1, 0, 0, vm_figures(samples, memory))
    status, _, body = await fetch(server, "/api/vms/default/vm1?since=-1m&points=60")
    assert status == 200
    answer = json.loads(body)
    assert answer["vm"]["vm"] == "vm1" and answer["vm"]["headroom_bytes"] == 259 << 20
    assert answer["console"] is None  # LOGS_DIR has no console file of it
    assert [p["pid"] for p in answer["vm"]["processes"]] == [42, 7, 8]
    processes = answer["processes"]["series"]
    assert set(processes) == {"qemu-kvm", "virtqemud"}  # one series per name, its PIDs summed
    assert max(v for v in processes["qemu-kvm"] if v is not None) == (220 << 20)
    assert max(v for v in processes["virtqemud"] if v is not None) == (21 << 20)
    assert set(answer["overhead"]["series"]) == {""}
    assert max(v for v in answer["overhead"]["series"][""] if v is not None) == (241 - 160) << 20
    assert min(v for v in answer["headroom"]["series"][""] if v is not None) == 259 << 20
    # The dashboard's chooser: overhead and headroom per VM (unknown for vm10: no series).
    _, _, body = await fetch(server, "/api/series?since=-1m&points=60&figure=headroom_bytes")
    assert set(json.loads(body)["series"]) == {"default/vm1"}
    # The page: "_" is no namespace; names are looked up, anything else is 404 without echoing it.
    status, kind, page = await fetch(server, "/vms/default/vm1")
    assert status == 200 and kind.startswith("text/html") and b'src="../../static/vm.js"' in page
    assert (await fetch(server, "/vms/_/plain"))[0] == 200
    assert (await fetch(server, "/api/vms/_/plain"))[0] == 200
    for path in ("/vms/default/vm2", "/vms/_/vm1", "/vms/default/..%2F..%2Fetc", "/api/vms/default/vm",
                 "/vms/default/%3Cscript%3E", "/api/vms/x/vm1?since=-1m"):  # fmt: skip
        status, _, body = await fetch(server, path)
        assert status == 404 and b"script" not in body and b"etc" not in body, path
    assert (await fetch(server, "/api/vms/default/vm1?since=tomorrow"))[0] == 400
    assert answer["vm"]["in_latest_poll"] is True
    # vm1 stops: its page and history stay, with its last figures, marked as not in the latest poll.
    later = now + timedelta(seconds=10)
    rest = [Sample(later, "", "plain", "", "host", "procfs", "qemu-kvm", 3, 100 << 20)]
    state.publish(rest, 0.1, 0, 0, vm_figures(rest, {}))
    assert (await fetch(server, "/vms/default/vm1"))[0] == 200
    status, _, body = await fetch(server, "/api/vms/default/vm1?since=-1m&points=60")
    stopped = json.loads(body)
    assert status == 200 and stopped["vm"]["in_latest_poll"] is False
    assert stopped["vm"]["headroom_bytes"] == 259 << 20 and stopped["vm"]["processes"] == []
    assert max(v for v in stopped["processes"]["series"]["qemu-kvm"] if v is not None) == (220 << 20)
    assert [vm["vm"] for vm in json.loads((await fetch(server, "/api/vms"))[2])] == ["plain"]
    status, kind, script = await fetch(server, "/static/vm.js")
    assert status == 200 and b"innerHTML" not in script


def test_a_vm_gone_longer_than_the_series_keep_is_forgotten(state: LiveState) -> None:
    def poll(at: datetime, vm: str) -> None:
        samples = [Sample(at, "ns", vm, f"virt-launcher-{vm}", "n1", "procfs", "qemu-kvm", 1, 1 << 20)]
        state.publish(samples, 0.1, 0, 0, vm_figures(samples, {}))

    poll(NOW, "old")
    poll(NOW + timedelta(seconds=5), "new")
    assert set(state.last_seen) == {("ns", "old"), ("ns", "new")}  # the page of "old" still answers
    poll(NOW + timedelta(seconds=RETENTION_SECS + 10), "new")
    assert set(state.last_seen) == {("ns", "new")}
