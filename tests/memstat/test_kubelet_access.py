"""memstat's kubelet source reading kubelets directly (KUBELET_ACCESS=direct) or through the proxy.

Against the test cluster's HTTPS kubelets: the right CA samples; a node whose kubelet cannot be read
(another CA, a token without ``nodes/stats``, no token, no answer) is skipped, logged once per reason,
counted by node and reason, and the other nodes are sampled. The process runs for real, with its
settings as variables.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import subprocess
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from kubevirt_test_cluster import KubeVirtCluster, Population
from kubevirt_test_cluster.pki import CertificateAuthority
from stats_log_collector.kube import KubeClient
from stats_log_collector.kube.kubelet import DirectReader
from stats_log_collector.kube.retry import RetryPolicy
from stats_log_collector.memstat.csvstore import CsvStore
from stats_log_collector.memstat.inventory import Inventory
from stats_log_collector.memstat.kubelet_source import KubeletSource
from stats_log_collector.memstat.metrics import registry_for
from stats_log_collector.memstat.node_failures import NodeFailures
from stats_log_collector.memstat.poller import Poller
from stats_log_collector.memstat.state import LiveState
from stats_log_collector.settings import KubeletSettings, KubeSettings
from tests.helpers import http, wait_for

AT = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
SKIPPED = "node skipped: its kubelet cannot be read (logged again only when the reason changes)"
RECOVERED = "node's kubelet read again"
Memstat = Callable[..., tuple[subprocess.Popen[bytes], int]]


def csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text()))) if path.exists() else []


def vms_on(population: Population, nodes: set[str]) -> set[str]:
    return {vmi.name for vmi in population.vmis if population.launcher_of(vmi).node in nodes}


class Direct:
    """A KubeletSource reading kubelets directly, its poller, and what a test looks at."""

    def __init__(
        self, client: KubeClient, inventory: Inventory, reader: DirectReader, tmp_path: Path
    ) -> None:
        self.state = LiveState()
        self.source = KubeletSource(
            client, inventory, reader=reader, failures=self.state.collector.node_failures
        )
        self.poller = Poller(self.source, CsvStore(tmp_path), self.state, 5)

    async def poll(self) -> set[str]:
        return {sample.vm for sample in await self.poller.poll_once(AT)}

    def metric(self, node: str, reason: str) -> float:
        text = generate_latest(registry_for(self.state.collector)).decode()
        line = f'memstat_node_failures_total{{node="{node}",reason="{reason}"}} '
        return next((float(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line)), 0.0)


@pytest.fixture
async def direct(kubevirt_cluster: KubeVirtCluster, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    opened: list[Any] = []
    watching: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def make(
        token: str | None = "test-token-not-a-secret", request_timeout: float = 5.0, **settings: Any
    ) -> Direct:
        config = kubevirt_cluster.write_kubeconfig(tmp_path / f"kubeconfig-{len(opened)}", token=token)
        kube = KubeSettings(kubeconfig=config, kube_request_timeout_secs=request_timeout, kube_retries=1)
        client = await KubeClient.connect(kube, RetryPolicy(retries=1, base_delay=0.01, max_delay=0.02))
        reader = await DirectReader.connect(client, KubeletSettings(**settings), kube)
        opened.extend([reader, client])
        inventory = Inventory(client, ["vms"], sync_timeout=10.0)
        stop = asyncio.Event()
        watching.append((stop, asyncio.create_task(inventory.run(stop))))
        await inventory.wait_synced()
        return Direct(client, inventory, reader, tmp_path / f"data-{len(opened)}")

    yield make
    for stop, task in watching:
        stop.set()
        await task
    for thing in opened:
        await thing.close()


def skipped_logs(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.node, r.reason) for r in caplog.records if r.getMessage() == SKIPPED]  # type: ignore[attr-defined]


def test_a_node_failure_is_logged_when_it_starts_changes_or_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = NodeFailures()
    with caplog.at_level(logging.INFO):
        for reason in ("timeout", "timeout", "tls", "tls"):
            failures.failed("n1", reason, f"{reason} error", 3)
        failures.succeeded("n1")
        failures.succeeded("n1")
        failures.failed("n1", "tls", "tls error", 3)
        failures.failed("n2", "tls", "tls error", 1)
    fields = [r.__dict__ for r in caplog.records]  # a log record's extra fields
    logged = [(f["msg"], f["node"], f.get("reason", f.get("after"))) for f in fields]
    assert logged == [
        (SKIPPED, "n1", "timeout"),
        (SKIPPED, "n1", "tls"),
        (RECOVERED, "n1", "tls"),
        (SKIPPED, "n1", "tls"),
        (SKIPPED, "n2", "tls"),
    ]
    assert failures.counts == {("n1", "timeout"): 2, ("n1", "tls"): 3, ("n2", "tls"): 1}
    assert failures.failing == {"n1": "tls", "n2": "tls"}


async def test_a_node_of_another_ca_is_skipped_once_logged_and_counted_each_poll(
    kubevirt_cluster: KubeVirtCluster, direct: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=3, vms_per_namespace=9, log_lines=0)
    odd = population.nodes[1]
    kubevirt_cluster.use_own_kubelet_ca(odd)
    polling = await direct()
    others = set(population.nodes) - {odd}
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            assert await polling.poll() == vms_on(population, others)
    assert skipped_logs(caplog) == [(odd, "tls")]
    [record] = [r for r in caplog.records if r.getMessage() == SKIPPED]
    assert "certificate verify failed" in record.error  # type: ignore[attr-defined]
    assert record.vms == len(vms_on(population, {odd}))  # type: ignore[attr-defined]
    assert polling.metric(odd, "tls") == 3.0 and polling.metric(population.nodes[0], "tls") == 0.0
    assert polling.state.collector.health.failures == 3 * len(vms_on(population, {odd}))
    assert polling.state.ready  # the other nodes' samples make good polls
    # No proxied request: the API server was asked for VMIs, pods and nodes only.
    assert not [r for r in kubevirt_cluster.requests() if "/proxy/" in r.path]


async def test_a_token_without_nodes_stats_then_granted_it(
    kubevirt_cluster: KubeVirtCluster, direct: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=2, vms_per_namespace=4, log_lines=0)
    user = "system:serviceaccount:monitoring:memstat"
    kubevirt_cluster.allow_kubelet_token("memstat-token", user, ["metrics"])
    polling = await direct(token="memstat-token")
    with caplog.at_level(logging.INFO):
        assert await polling.poll() == set()
        assert await polling.poll() == set()
        kubevirt_cluster.allow_kubelet_token("memstat-token", user, ["stats"])
        assert await polling.poll() == vms_on(population, set(population.nodes))
    assert sorted(skipped_logs(caplog)) == sorted((node, "forbidden") for node in population.nodes)
    errors = [r.error for r in caplog.records if r.getMessage() == SKIPPED]  # type: ignore[attr-defined]
    assert all("subresource(s)=[stats]" in e and "get nodes/stats" in e for e in errors)
    recovered = sorted(r.node for r in caplog.records if r.getMessage() == RECOVERED)  # type: ignore[attr-defined]
    assert recovered == sorted(population.nodes)
    assert polling.metric(population.nodes[0], "forbidden") == 2.0


async def test_no_token_is_unauthorized(
    kubevirt_cluster: KubeVirtCluster, direct: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=2, vms_per_namespace=2, log_lines=0)
    polling = await direct(token=None)
    with caplog.at_level(logging.WARNING):
        assert await polling.poll() == set()
    assert sorted(skipped_logs(caplog)) == sorted((node, "unauthorized") for node in population.nodes)


async def test_a_kubelet_that_does_not_answer_then_fails_otherwise_is_logged_again(
    kubevirt_cluster: KubeVirtCluster, direct: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=3, vms_per_namespace=6, log_lines=0)
    dead = population.nodes[2]
    kubevirt_cluster.set_node_reachable(dead, False)
    polling = await direct(request_timeout=0.5)
    alive = set(population.nodes) - {dead}
    with caplog.at_level(logging.INFO):
        assert await polling.poll() == vms_on(population, alive)
        assert await polling.poll() == vms_on(population, alive)
        kubevirt_cluster.set_node_reachable(dead)
        kubevirt_cluster.use_own_kubelet_ca(dead)  # back, with a certificate nobody vouches for
        assert await polling.poll() == vms_on(population, alive)
    assert skipped_logs(caplog) == [(dead, "timeout"), (dead, "tls")]
    assert (polling.metric(dead, "timeout"), polling.metric(dead, "tls")) == (2.0, 1.0)


# --- the real process --------------------------------------------------------------------------------------


def stderr_of(tmp_path: Path) -> str:
    return (tmp_path / "memstat.stderr").read_text()


def failures_metric(port: int, node: str, reason: str) -> float:
    status, body = http(port, "/metrics")
    line = f'memstat_node_failures_total{{node="{node}",reason="{reason}"}} '
    found = [row for row in body.decode().splitlines() if row.startswith(line)] if status == 200 else []
    return float(found[0].removeprefix(line)) if found else 0.0


def test_memstat_reads_kubelets_directly_by_default(
    memstat: Memstat, kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=2, vms_per_namespace=4, log_lines=0)
    kubeconfig = kubevirt_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    memstat(KUBECONFIG=str(kubeconfig), NAMESPACE="vms")
    csv_path = tmp_path / "data" / "mem-stats.csv"
    wait_for(
        lambda: {row["vm"] for row in csv_rows(csv_path)} == vms_on(population, set(population.nodes)), "rows"
    )
    assert not [r for r in kubevirt_cluster.requests() if "/proxy/" in r.path]
    assert {r.node for r in kubevirt_cluster.kubelet_requests() if r.status == 200} == set(population.nodes)
    assert "reading kubelets directly (get nodes/stats)" in stderr_of(tmp_path)


def test_memstat_through_the_node_proxy_still_works_and_warns(
    memstat: Memstat, kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=2, vms_per_namespace=4, log_lines=0)
    kubeconfig = kubevirt_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    memstat(KUBECONFIG=str(kubeconfig), NAMESPACE="vms", KUBELET_ACCESS="proxy")
    csv_path = tmp_path / "data" / "mem-stats.csv"
    wait_for(
        lambda: {row["vm"] for row in csv_rows(csv_path)} == vms_on(population, set(population.nodes)), "rows"
    )
    assert {r.path for r in kubevirt_cluster.requests() if "/proxy/" in r.path} == {
        f"/api/v1/nodes/{node}/proxy/stats/summary" for node in population.nodes
    }
    assert kubevirt_cluster.kubelet_requests() == []
    assert "KUBELET_ACCESS=proxy" in stderr_of(tmp_path) and "get nodes/proxy" in stderr_of(tmp_path)


def test_memstat_with_insecure_tls_samples_and_says_so(
    memstat: Memstat, kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=2, vms_per_namespace=2, log_lines=0)
    for node in population.nodes:  # self-signed, as kubelets are without serverTLSBootstrap
        kubevirt_cluster.use_own_kubelet_ca(node)
    kubeconfig = kubevirt_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    memstat(KUBECONFIG=str(kubeconfig), NAMESPACE="vms", KUBELET_INSECURE_TLS="true")
    csv_path = tmp_path / "data" / "mem-stats.csv"
    wait_for(
        lambda: {row["vm"] for row in csv_rows(csv_path)} == vms_on(population, set(population.nodes)), "rows"
    )
    warnings = [line for line in stderr_of(tmp_path).splitlines() if "KUBELET_INSECURE_TLS=true" in line]
    assert len(warnings) == 1 and " WARNING " in warnings[0] and "NOT verified" in warnings[0]


def test_memstat_with_a_wrong_ca_logs_each_node_once_and_counts_every_poll(
    memstat: Memstat, kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=2, vms_per_namespace=2, log_lines=0)
    wrong = tmp_path / "wrong-ca.pem"
    wrong.write_bytes(CertificateAuthority("not-the-cluster-ca").cert_pem)
    kubeconfig = kubevirt_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    process, port = memstat(KUBECONFIG=str(kubeconfig), NAMESPACE="vms", KUBELET_CA_FILE=str(wrong))
    first = population.nodes[0]
    wait_for(lambda: failures_metric(port, first, "tls") >= 3, "three failed polls counted")
    lines = [line for line in stderr_of(tmp_path).splitlines() if "node skipped" in line]
    assert sorted(line.split("node=")[1].split()[0] for line in lines) == sorted(population.nodes)
    assert all("reason=tls" in line and "certificate verify failed" in line for line in lines)
    assert process.poll() is None and csv_rows(tmp_path / "data" / "mem-stats.csv") == []


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"KUBELET_ACCESS": "sideways"}, "KUBELET_ACCESS: must be one of direct, proxy"),
        ({"KUBELET_ADDRESS_TYPES": "InternalIP,Wormhole"}, "KUBELET_ADDRESS_TYPES: 'Wormhole' is not"),
        ({"KUBELET_ADDRESS_TYPES": " , "}, "KUBELET_ADDRESS_TYPES: must be a comma-separated list"),
        ({"KUBELET_INSECURE_TLS": "maybe"}, "KUBELET_INSECURE_TLS: must be true or false"),
        ({"KUBELET_CA_FILE": "/nonexistent/ca.pem"}, "KUBELET_CA_FILE: /nonexistent/ca.pem is not a file"),
        (
            {"KUBELET_CA_FILE": "/etc/hostname", "KUBELET_INSECURE_TLS": "true"},
            "KUBELET_INSECURE_TLS: cannot be true when KUBELET_CA_FILE is set",
        ),
    ],
)
def test_a_bad_kubelet_setting_is_one_line_and_exit_2(
    memstat: Memstat, tmp_path: Path, variables: dict[str, str], named: str
) -> None:
    process, _ = memstat(**variables)
    assert process.wait(timeout=20) == 2
    [line] = stderr_of(tmp_path).splitlines()
    assert named in line and "configuration error" in line


def test_a_kubelet_ca_file_that_is_not_a_certificate_is_one_line_and_exit_2(
    memstat: Memstat, kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    kubeconfig = kubevirt_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n")
    process, _ = memstat(KUBECONFIG=str(kubeconfig), KUBELET_CA_FILE=str(tmp_path / "ca.pem"))
    assert process.wait(timeout=20) == 2
    [line] = [line for line in stderr_of(tmp_path).splitlines() if "configuration error" in line]
    assert f"KUBELET_CA_FILE: cannot read the CA file '{tmp_path / 'ca.pem'}': no PEM certificate" in line
