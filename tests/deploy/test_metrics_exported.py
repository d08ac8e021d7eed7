"""Every metric the Grafana dashboard and the PrometheusRule query is one the components export.

memstat (procfs source over a node's /proc made of files, naming its VM from the test cluster) and
virtlet-log (over a console folder, METRICS_PORT on) run as real processes; their /metrics are scraped and
parsed with prometheus_client's parser; a counter family ``x`` is exported as ``x_total``. The dashboard
is also checked for what it is for: VM memory per process, poll health, virtlet-log's lag and throughput,
headroom, and for being the ConfigMap the monitoring overlay ships.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kubevirt_test_cluster import KubeVirtCluster
from tests.deploy.manifests import DEPLOY, KUBECTL, kustomize, one
from tests.fake_proc import fake_qemu
from tests.helpers import free_port, http, wait_for

DASHBOARD = DEPLOY / "grafana" / "stats-log-collector.json"
PROMETHEUS_RULE = DEPLOY / "components" / "monitoring" / "prometheusrule.yaml"
OUR_METRIC = re.compile(r"\b(?:memstat|virtlet_log)_[a-z0-9_]+\b")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def queries() -> dict[str, str]:
    """Every PromQL expression: the dashboard's targets and variables, and the rules'."""
    found = {f"panel {p['title']!r} {t['refId']}": t["expr"] for p in panels() for t in p["targets"]}
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            found[f"variable {variable['name']}"] = variable["definition"]
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    for group in rule["spec"]["groups"]:
        for entry in group["rules"]:
            found[f"alert {entry['alert']}"] = entry["expr"]
    return found


def exported_names(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


def started(args: list[str], environ: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as stderr:
        return subprocess.Popen(args, env=environ, stderr=stderr)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    running: list[subprocess.Popen[bytes]] = []
    yield running
    for process in running:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scrape(port: int, process: subprocess.Popen[bytes], log: Path, ready: str) -> str:
    wait_for(lambda: http(port, ready)[0] == 200 or process.poll() is not None, f"{ready} on {port}", 60)
    assert process.poll() is None, log.read_text()
    status, body = http(port, "/metrics")
    assert status == 200
    return body.decode()


def test_every_queried_metric_is_exported_by_a_running_component(
    kubevirt_cluster: KubeVirtCluster, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=1, vms_per_namespace=1, log_lines=1)
    [pod], [vmi] = population.launcher_pods, population.vmis
    fake_qemu(tmp_path / "proc", 4242, f"vms_{vmi.name}", pod.uid, 600 * 1024)
    base = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    memstat_port, virtlet_port = free_port(), free_port()
    memstat_env = {
        **base,
        "KUBECONFIG": str(kubevirt_cluster.write_kubeconfig(tmp_path / "kubeconfig")),
        "MEMSTAT_SOURCE": "procfs",
        "PROC_ROOT": str(tmp_path / "proc"),
        "NODE_NAME": pod.node,
        "NAMESPACE": "vms",
        "DATA_DIR": str(tmp_path / "memstat"),
        "HTTP_PORT": str(memstat_port),
        "POLL_INTERVAL_SECS": "1",
    }
    for folder in ("vms", "pods"):
        (tmp_path / folder).mkdir()
    virtlet_env = {
        **base,
        "VIRTLET_VM_LOG_LOCATION": str(tmp_path / "vms"),
        "KUBERNETES_POD_LOGS": str(tmp_path / "pods"),
        "STATE_DIR": str(tmp_path / "state"),
        "METRICS_PORT": str(virtlet_port),
    }
    command = [sys.executable, "-m", "stats_log_collector"]
    logs = tmp_path / "memstat.stderr", tmp_path / "virtlet-log.stderr"
    processes.append(started([*command, "memstat"], memstat_env, logs[0]))
    processes.append(started([*command, "virtlet-log"], virtlet_env, logs[1]))
    exported = exported_names(scrape(memstat_port, processes[0], logs[0], "/readyz"))
    exported |= exported_names(scrape(virtlet_port, processes[1], logs[1], "/metrics"))
    assert "memstat_vm_headroom_bytes" in exported and "virtlet_log_lines_total" in exported
    for where, expression in queries().items():
        used = set(OUR_METRIC.findall(expression))
        assert used, f"{where}: queries none of the components' metrics: {expression}"
        assert used <= exported, f"{where}: {sorted(used - exported)} exported by no component"


def test_the_metric_check_can_fail() -> None:
    assert exported_names("# TYPE memstat_polls counter\nmemstat_polls_total 3\n") == {"memstat_polls_total"}
    assert not {"memstat_polls"} <= exported_names("# TYPE memstat_polls counter\nmemstat_polls_total 3\n")


def test_the_dashboard_shows_what_it_is_for() -> None:
    board = dashboard()
    assert board["uid"] == "stats-log-collector" and board["schemaVersion"] >= 36
    text = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels()}
    wanted = {
        "VM memory per process": "memstat_rss_bytes",
        "headroom": "memstat_vm_headroom_bytes",
        "poll health": "memstat_poll_failures_total",
        "time since a good poll": "memstat_last_success_timestamp_seconds",
        "virtlet-log lag": "virtlet_log_behind_bytes",
        "virtlet-log waiting consoles": "virtlet_log_waiting_files",
        "virtlet-log throughput": "virtlet_log_written_bytes_total",
    }
    for what, metric in wanted.items():
        assert any(metric in expressions for expressions in text.values()), what
    assert any("by (namespace, vm, process)" in e for e in text.values())  # per process
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["description"], panel["title"]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (it renders the overlays)")
def test_the_monitoring_overlay_ships_the_dashboard_for_grafanas_sidecar() -> None:
    objects = kustomize(DEPLOY / "overlays" / "monitoring")
    config_map = one(objects, "ConfigMap", "stats-log-collector-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["stats-log-collector.json"]) == dashboard()
