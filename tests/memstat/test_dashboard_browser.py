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
from pathlib import Path

import pytest

from tests.memstat.conftest import http, wait_for

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
    process, port = memstat(MEMSTAT_SOURCE="procfs")
    wait_for(lambda: http(port, "/readyz")[0] == 200, "first poll")
    time.sleep(3)  # a few samples
    dom = chromium(f"http://127.0.0.1:{port}/dashboard", "--dump-dom")
    labels = re.findall(r'<div class="u-label">([^<]*)</div>', dom)
    assert labels[0] == "Time" and "testvm" in labels, labels  # other QEMUs of this host may show too
    points = json.loads(re.search(r'data-points="([^"]*)"', dom)[1].replace("&quot;", '"'))  # type: ignore[index]
    assert points["testvm"] >= 1
    assert "<td>testvm</td>" in dom  # the latest-sample table
    ARTIFACTS.mkdir(exist_ok=True)
    chromium(f"http://127.0.0.1:{port}/dashboard", f"--screenshot={ARTIFACTS / 'dashboard.png'}")
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
    process.terminate()
