"""``stats-log-collector logs-collector`` as a real process: --once, SIGUSR1, kill -9, bad configuration."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kubevirt_test_cluster import KubeVirtCluster
from tests.helpers import wait_for
from tests.logs_collector.conftest import Scenario

Start = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def logs_collector(scenario: Scenario, tmp_path: Path) -> Iterator[Start]:
    started: list[subprocess.Popen[bytes]] = []
    stderr = tmp_path / "logs-collector.stderr"

    def start(*args: str, **env: str) -> subprocess.Popen[bytes]:
        environ = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        environ.update(
            {
                "HOME": str(tmp_path),
                "KUBE_API_URL": scenario.cluster.url,
                "KUBE_RETRIES": "1",
                "KUBE_REQUEST_TIMEOUT_SECS": "5",
                "DATA_DIR": str(scenario.data_dir),
                "NAMESPACE": "vms",
                **env,
            }
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "stats_log_collector", "logs-collector", *args],
            env=environ,
            stderr=open(stderr, "ab"),  # noqa: SIM115
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def log_text(tmp_path: Path) -> str:
    path = tmp_path / "logs-collector.stderr"
    return path.read_text() if path.exists() else ""


def populate(scenario: Scenario, vms: int = 4, lines: int = 3) -> None:
    for index in range(vms):
        name = f"vm-{index}"
        if name not in scenario.vmis:
            scenario.vm(name, f"node-{index % 2 + 1}")
        scenario.launcher(name, lines=lines)
    for node in ("node-1", "node-2"):
        scenario.handler(node, [vm for vm, ref in scenario.vmis.items() if ref.node == node])


def test_once_collects_and_exits(scenario: Scenario, logs_collector: Start, tmp_path: Path) -> None:
    populate(scenario)
    process = logs_collector("--once")
    assert process.wait(timeout=60) == 0
    scenario.assert_exact()
    summary = [line for line in log_text(tmp_path).splitlines() if "collection done" in line]
    assert len(summary) == 1 and "vms=4" in summary[0] and "vms_failed=0" in summary[0]


def test_bad_configuration_exits_2_naming_the_variable(logs_collector: Start, tmp_path: Path) -> None:
    process = logs_collector("--once", COLLECT_INTERVAL_SECS="hourly")
    assert process.wait(timeout=30) == 2
    [line] = log_text(tmp_path).strip().splitlines()
    assert "COLLECT_INTERVAL_SECS" in line and "configuration error" in line


def test_unreachable_api_fails_once(logs_collector: Start, tmp_path: Path) -> None:
    process = logs_collector("--once", KUBE_API_URL="http://127.0.0.1:9", KUBE_REQUEST_TIMEOUT_SECS="1")
    assert process.wait(timeout=60) == 1
    assert "cannot reach the Kubernetes API" in log_text(tmp_path)


def test_sigusr1_runs_now_and_sigterm_stops(
    scenario: Scenario, logs_collector: Start, tmp_path: Path
) -> None:
    populate(scenario)
    process = logs_collector(COLLECT_INTERVAL_SECS="3600")
    wait_for(lambda: "waiting for the next run" in log_text(tmp_path), "the first run", timeout=60)
    scenario.assert_exact()
    populate(scenario)
    process.send_signal(signal.SIGUSR1)
    wait_for(lambda: log_text(tmp_path).count("collection done") == 2, "a run on SIGUSR1", timeout=60)
    scenario.assert_exact()
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0 and time.monotonic() - began < 5


def test_kill_9_during_a_run_then_restart_is_exact(
    scenario: Scenario, logs_collector: Start, tmp_path: Path
) -> None:
    populate(scenario, vms=6)
    # vm-5's compute log hangs: the run is stuck after publishing the other windows
    stuck = scenario.pods["vm-5"][0].name
    scenario.cluster.inject_timeout(rf"/pods/{stuck}/log$", 60.0, times=None)
    journal = scenario.data_dir / ".logs-collector" / "cursors.journal"
    process = logs_collector("--once", COLLECT_CONCURRENCY="2", KUBE_REQUEST_TIMEOUT_SECS="60")
    wait_for(
        lambda: (
            journal.exists()
            and journal.stat().st_size > 0
            and len(list(scenario.data_dir.rglob("*.log.gz"))) > 5
        ),
        "windows published",
        timeout=60,
    )
    process.kill()
    process.wait()
    assert "collection done" not in log_text(tmp_path)
    scenario.cluster.clear_faults()
    populate(scenario, vms=6)
    assert logs_collector("--once").wait(timeout=60) == 0
    scenario.assert_exact()


def kill_9_midway(logs_collector: Start, rng: random.Random, earliest: float, latest: float) -> None:
    """A run killed with SIGKILL after a random while (one stream at a time, so it is mid-run)."""
    process = logs_collector("--once", COLLECT_CONCURRENCY="1")
    time.sleep(rng.uniform(earliest, latest))
    process.kill()
    process.wait()


def test_kill_9_at_random_moments_never_loses_or_repeats(
    scenario: Scenario, logs_collector: Start, tmp_path: Path
) -> None:
    rng = random.Random(5)
    populate(scenario, vms=8, lines=200)
    for _ in range(6):
        kill_9_midway(logs_collector, rng, 0.3, 1.5)
        populate(scenario, vms=8, lines=50)
    assert logs_collector("--once").wait(timeout=60) == 0
    scenario.assert_exact()
    assert not [path for path in scenario.data_dir.rglob(".*.tmp")]


def test_log_verbosity_patches_the_kubevirt_cr_only_when_set(
    scenario: Scenario, logs_collector: Start, kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    kubevirt_cluster.add_kubevirt_cr("kubevirt")
    assert logs_collector("--once").wait(timeout=60) == 0
    assert not [r for r in kubevirt_cluster.requests() if r.method == "PATCH"]
    assert logs_collector("--once", LOG_VERBOSITY="6").wait(timeout=60) == 0
    cr = kubevirt_cluster.get_object("kubevirt.io/v1", "KubeVirt", "kubevirt", "kubevirt")
    assert cr is not None
    verbosity = cr["spec"]["configuration"]["developerConfiguration"]["logVerbosity"]
    assert verbosity == {"virtLauncher": 6, "virtHandler": 6}
    assert "raised virt-launcher and virt-handler log verbosity" in log_text(tmp_path)


def test_log_verbosity_patches_hyperconverged_with_hco(
    scenario: Scenario, logs_collector: Start, kubevirt_cluster: KubeVirtCluster
) -> None:
    kubevirt_cluster.add_hco_cr("kubevirt-hyperconverged")
    process = logs_collector("--once", LOG_VERBOSITY="4", HCO_NAMESPACE="kubevirt-hyperconverged")
    assert process.wait(timeout=60) == 0
    cr = kubevirt_cluster.get_object(
        "hco.kubevirt.io/v1beta1", "HyperConverged", "kubevirt-hyperconverged", "kubevirt-hyperconverged"
    )
    assert cr is not None
    assert cr["spec"]["logVerbosityConfig"]["kubevirt"] == {"virtLauncher": 4, "virtHandler": 4}


def test_completed_init_containers_are_collected_once_across_kill_9_and_restarts(
    scenario: Scenario, logs_collector: Start
) -> None:
    rng = random.Random(11)
    for index in range(4):
        scenario.vm(f"vm-{index}", f"node-{index % 2 + 1}", init_lines=150)
    populate(scenario, vms=4, lines=150)
    for _ in range(4):
        kill_9_midway(logs_collector, rng, 0.2, 1.0)
    assert logs_collector("--once").wait(timeout=60) == 0
    scenario.assert_exact()
    scenario.cluster.clear_requests()
    assert logs_collector("--once").wait(timeout=60) == 0  # a restart: the store says they are done
    init_reads = [
        r
        for r in scenario.cluster.requests()
        if r.path.endswith("/log")
        and r.param("container") in ("container-disk-binary", "volumecontainerdisk-init")
    ]
    assert init_reads == []
    scenario.assert_exact()


def test_kill_9_during_early_collections_then_restart_is_exact(
    scenario: Scenario, logs_collector: Start, tmp_path: Path
) -> None:
    rng = random.Random(3)
    populate(scenario, vms=6, lines=100)
    process = logs_collector(COLLECT_INTERVAL_SECS="3600", COLLECT_CONCURRENCY="1")
    wait_for(lambda: "waiting for the next run" in log_text(tmp_path), "the first run", timeout=60)
    populate(scenario, vms=6, lines=300)  # what the pods log before they go
    stuck = scenario.pods["vm-5"][0].name  # its reads hang: the kill comes mid-collection
    scenario.cluster.inject_timeout(rf"/pods/{stuck}/log$", 60.0, times=None)
    for index in range(6):
        scenario.cluster.delete_pod("vms", scenario.pods[f"vm-{index}"][0].name, grace_period_seconds=600)
    wait_for(lambda: log_text(tmp_path).count("collected early") >= 2, "early collections", timeout=60)
    time.sleep(rng.uniform(0.0, 0.5))
    process.kill()
    process.wait()
    scenario.cluster.clear_faults()
    for _ in range(3):  # restarts killed again at random moments, each from the cursors committed
        process = logs_collector(COLLECT_INTERVAL_SECS="3600", COLLECT_CONCURRENCY="1")
        time.sleep(rng.uniform(0.3, 1.5))
        process.kill()
        process.wait()
    process = logs_collector(COLLECT_INTERVAL_SECS="3600")

    def exact() -> bool:
        scenario.assert_exact()
        return True

    wait_for(exact, "every line once", timeout=60, not_yet=(AssertionError,))
    time.sleep(1.0)  # and nothing read again later
    scenario.assert_exact()
    assert not [path for path in scenario.data_dir.rglob(".*.tmp")]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
