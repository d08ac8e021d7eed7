"""The dashboard, served by the demo's memstat, in headless Chromium: one series per VM, recent points.

A screenshot is kept as ``artifacts/demo-dashboard.png`` for people to look at.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.conftest import BOOT_TIMEOUT, CHROMIUM, RunningDemo
from tests.helpers import http, wait_for
from tests.memstat.test_dashboard_browser import chromium

ARTIFACTS = Path(__file__).parents[2] / "artifacts"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"
)


def points_in_last_minute(demo: RunningDemo) -> dict[str, int]:
    status, body = http(demo.port, "/api/series?since=-60s&points=120")
    assert status == 200
    series = json.loads(body)["series"]
    return {vm: sum(v is not None for v in series.get(vm, [])) for vm in demo.names}


def test_dashboard_draws_one_series_per_vm(demo: RunningDemo) -> None:
    wait_for(lambda: min(points_in_last_minute(demo).values()) >= 3, "points of every VM", BOOT_TIMEOUT)
    url = re.findall(r"dashboard +(http://\S+)", demo.stdout)[-1]  # the link the demo prints
    assert url == f"http://127.0.0.1:{demo.port}/dashboard?range=300"
    dom = chromium(url, "--dump-dom")
    labels = re.findall(r'<div class="u-label">([^<]*)</div>', dom)
    assert labels[0] == "Time"
    assert set(demo.names) <= set(labels[1:]), labels  # another QEMU of this host may show as well
    assert len(labels[1:]) == len(set(labels[1:]))  # one series per VM
    match = re.search(r'data-points="([^"]*)"', dom)
    assert match is not None
    drawn = json.loads(match[1].replace("&quot;", '"'))
    for vm in demo.names:
        assert drawn[vm] >= 1, drawn
        assert f'<a href="vms/_/{vm}">{vm}</a>' in dom  # the latest-sample table, linked to the VM's page
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "demo-dashboard.png"
    chromium(url, f"--screenshot={screenshot}")
    assert screenshot.stat().st_size > 10_000
    # A VM's page: its guest memory from QEMU's -m, its QEMU's memory over time.
    vm = demo.names[0]
    page = chromium(f"http://127.0.0.1:{demo.port}/vms/_/{vm}?range=300", "--dump-dom")
    figures = dict(re.findall(r"<th>([^<]*)</th><td data-figure=\"[^\"]*\">([^<]*)</td>", page))
    assert figures["guest memory MiB"] != "—" and figures["source"] == "procfs", figures
    assert '<span id="name">' + vm + "</span>" in page
