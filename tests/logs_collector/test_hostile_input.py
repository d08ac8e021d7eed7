# ruff: noqa: F811 - the real-process fixture of test_command.py is imported, then taken as a parameter
"""logs-collector against hostile input and faults, as a real process: names, a second instance, signals.

The API answer is outside input: the test cluster stores objects as given (``add_vmi`` does not
validate names), so a VMI named ``..`` reaches the collector as it would from a broken or hostile server.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.logs_collector.conftest import Scenario
from tests.logs_collector.test_command import Start, log_text, logs_collector, populate  # noqa: F401


@pytest.mark.parametrize("name", ["..", ".", "a" * 256])
def test_a_vm_whose_name_cannot_be_a_folder_is_skipped(
    scenario: Scenario, logs_collector: Start, tmp_path: Path, name: str
) -> None:
    populate(scenario, vms=3)
    hostile = scenario.cluster.add_vmi("vms", name, "node-1")
    scenario.cluster.add_launcher_pod(hostile, name="virt-launcher-hostile-abcde")
    process = logs_collector("--once")
    assert process.wait(timeout=60) == 0
    scenario.assert_exact([f"vm-{index}" for index in range(3)])
    text = log_text(tmp_path)
    assert "Traceback" not in text
    [skipped] = [line for line in text.splitlines() if "VM not collected" in line]
    assert f"vms/{name}" in skipped and "not a usable file name" in skipped
    [summary] = [line for line in text.splitlines() if "collection done" in line]
    assert "vms=4" in summary and "vms_failed=1" in summary
    assert sorted(p.name for p in scenario.data_dir.iterdir()) == [".logs-collector", "vm-0", "vm-1", "vm-2"]


def test_a_pod_whose_name_cannot_be_a_file_name_fails_its_vm_only(
    scenario: Scenario, logs_collector: Start, tmp_path: Path
) -> None:
    populate(scenario, vms=2)
    hostile = scenario.cluster.add_vmi("vms", "vm-hostile", "node-1")
    scenario.cluster.add_launcher_pod(hostile, name="..")
    process = logs_collector("--once")
    assert process.wait(timeout=60) == 0
    scenario.assert_exact(["vm-0", "vm-1"])
    text = log_text(tmp_path)
    assert "Traceback" not in text
    skipped = [line for line in text.splitlines() if "VM not collected" in line]
    assert skipped and all("vms/vm-hostile" in line and "not a usable file name" in line for line in skipped)
    [summary] = [line for line in text.splitlines() if "collection done" in line]
    assert "vms_failed=1" in summary


def test_a_second_collector_on_one_data_dir_exits_2_then_kill_9_frees_it(
    scenario: Scenario, logs_collector: Start, tmp_path: Path
) -> None:
    populate(scenario, vms=2)
    first = logs_collector(COLLECT_INTERVAL_SECS="3600")
    wait_for(lambda: "waiting for the next run" in log_text(tmp_path), "the first run", timeout=60)
    before = {p: p.read_bytes() for p in scenario.data_dir.rglob("*") if p.is_file() and p.name != "lock"}
    populate(scenario, vms=2)  # new lines: a second collector that ran would publish them
    second = logs_collector("--once")
    assert second.wait(timeout=30) == 2
    [line] = [line for line in log_text(tmp_path).splitlines() if "DATA_DIR" in line]
    assert f"DATA_DIR: {scenario.data_dir / '.logs-collector'} is in use by another instance" in line
    after = {p: p.read_bytes() for p in scenario.data_dir.rglob("*") if p.is_file() and p.name != "lock"}
    assert after == before

    first.kill()
    first.wait()
    assert logs_collector("--once").wait(timeout=60) == 0
    scenario.assert_exact()


def test_sighup_stops_like_sigterm(scenario: Scenario, logs_collector: Start, tmp_path: Path) -> None:
    populate(scenario, vms=2)
    process = logs_collector(COLLECT_INTERVAL_SECS="3600")
    wait_for(lambda: "waiting for the next run" in log_text(tmp_path), "the first run", timeout=60)
    began = time.monotonic()
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=10) == 0 and time.monotonic() - began < 5
    assert "SIGHUP" in log_text(tmp_path)


def test_a_kubeconfig_that_is_not_one_exits_2_with_one_line(logs_collector: Start, tmp_path: Path) -> None:
    process = logs_collector("--once", KUBE_API_URL="", KUBECONFIG="/etc/passwd")
    assert process.wait(timeout=30) == 2
    [line] = log_text(tmp_path).strip().splitlines()
    assert "configuration error: KUBECONFIG: /etc/passwd is not a kubeconfig file" in line
