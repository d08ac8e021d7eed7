"""The dashboard in real headless Chromium, served by a real memstat over real QEMU-named processes.

The chart must have one series per VM with points in the last minute; a screenshot is kept in
``artifacts/dashboard.png`` for people to look at.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import http, wait_for
from tests.memstat.history import vm_name, write_history

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).parents[2] / "artifacts"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=8000", "--window-size=1200,800",
]  # fmt: skip

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
]


def chromium(url: str, *args: str) -> str:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, url],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    return result.stdout


def test_dashboard_draws_one_series_per_vm(memstat, fake_vm: int, tmp_path: Path) -> None:
    # Two hours of five VMs' history on disk (read at start), ending in the future: the last hour is full.
    this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    write_history(tmp_path / "data", vms=5, hours=2, start=this_hour - timedelta(hours=1))
    process, port = memstat(MEMSTAT_SOURCE="procfs")
    wait_for(lambda: b'"complete": true' in http(port, "/api/series?since=-1m")[1], "the history read")
    time.sleep(3)  # a few samples of the live VM
    dom = chromium(f"http://127.0.0.1:{port}/dashboard", "--dump-dom")
    labels = re.findall(r'<div class="u-label">([^<]*)</div>', dom)
    assert labels[0] == "Time" and "testvm" in labels, labels  # other QEMUs of this host may show too
    assert {f"vms/{vm_name(i)}" for i in range(5)} <= set(labels)
    points = json.loads(re.search(r'data-points="([^"]*)"', dom)[1].replace("&quot;", '"'))  # type: ignore[index]
    assert points["testvm"] >= 1
    assert points["vms/vm-0000"] >= 300  # the hour read from disk, at 5 s
    assert "reading the history" not in dom
    assert "<td>testvm</td>" in dom  # the latest-sample table
    ARTIFACTS.mkdir(exist_ok=True)
    chromium(f"http://127.0.0.1:{port}/dashboard", f"--screenshot={ARTIFACTS / 'dashboard.png'}")
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
    process.terminate()
