"""``/healthz`` (the poll loop is not stuck) and ``/readyz`` (polls succeed), on the live state's clock
and against the real process with a failing API.
"""

from __future__ import annotations

import signal
from pathlib import Path

from kubevirt_test_cluster import KubeVirtCluster
from stats_log_collector.memstat.state import LiveState
from tests.helpers import http, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_liveness_follows_attempts_and_readiness_follows_successes() -> None:
    clock = Clock()
    state = LiveState(request_timeout_s=10.0, clock=clock)
    assert state.not_alive() is None and state.not_ready() == "waiting for the first good poll"
    clock.now += 3 * 5.0 + 10.0 + 1  # no attempt finished yet, with the default 5 s interval
    assert state.not_alive() == "the poll loop has finished no poll for 26 s"
    state.publish([], 0.1, 0, 0)
    state.attempt_finished(2.0)
    assert state.not_alive() is None and state.not_ready() is None
    clock.now += 6.5  # three 2 s intervals without a good poll: the API is failing
    state.attempt_finished(2.0)  # failed attempts keep the loop alive
    assert state.not_alive() is None and state.not_ready() == "no good poll for 6 s"
    clock.now += 3 * 2.0 + 10.0 - 0.1  # the loop is slow, not stuck: within the request timeout
    assert state.not_alive() is None
    clock.now += 0.2
    assert state.not_alive() == "the poll loop has finished no poll for 16 s"
    state.publish([], 0.1, 0, 0)
    state.attempt_finished(2.0)
    assert state.ready and state.not_alive() is None


def test_readyz_fails_while_polls_fail_and_healthz_does_not(
    memstat, kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    kubevirt_cluster.populate(("vms",), nodes=1, vms_per_namespace=1, log_lines=0)
    kubeconfig = kubevirt_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    process, port = memstat(
        KUBECONFIG=str(kubeconfig), NAMESPACE="vms", KUBE_RETRIES="0", KUBE_REQUEST_TIMEOUT_SECS="1"
    )
    wait_for(lambda: http(port, "/readyz") == (200, b"ready\n"), "ready after the first poll")
    # The API alone failing fails no poll: the VMs are known from the watches, the kubelet answers.
    kubevirt_cluster.inject(".*", 503, times=None)
    polls = metric(port, "memstat_polls_total")
    wait_for(lambda: metric(port, "memstat_polls_total") >= polls + 4, "polls while the API fails")
    assert http(port, "/readyz") == (200, b"ready\n")
    # Its kubelet gone too: no node can be read, every poll fails.
    kubevirt_cluster.set_node_reachable("node-01", False)
    wait_for(lambda: http(port, "/readyz")[0] == 503, "not ready once polls fail for 3 intervals")
    status, body = http(port, "/readyz")
    assert status == 503 and body.startswith(b"no good poll for ")
    assert http(port, "/healthz") == (200, b"ok\n")  # the loop runs: a restart would not help
    kubevirt_cluster.clear_faults()
    kubevirt_cluster.set_node_reachable("node-01", True)
    wait_for(lambda: http(port, "/readyz")[0] == 200, "ready again after a good poll")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def metric(port: int, name: str) -> float:
    """A counter of memstat's /metrics (0 while absent)."""
    _, body = http(port, "/metrics")
    prefix = f"{name} "
    rows = [row for row in body.decode().splitlines() if row.startswith(prefix)]
    return float(rows[0].removeprefix(prefix)) if rows else 0.0
