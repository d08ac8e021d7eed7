"""The RBAC that `make install` grants is exactly what each component uses: nothing denied, nothing unused.

Each component runs for real, as a process, against the test cluster with the settings of its manifest
(the variants a user may choose: each memstat source, one namespace, several, all; LOG_VERBOSITY with
KubeVirt or HCO). The cluster's request journal gives every call it made; each call maps to the checks
the API server would make (verb, group, resource, namespace). The bindings install.sh renders for those
settings must allow every check, and every rule of the component's ClusterRoles must be used by one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from kubevirt_test_cluster import KubeVirtCluster
from stats_log_collector.cli import COMMANDS
from tests.deploy.authz import ALL, Access, Grant, accesses, denied, grants, kubelet_accesses, needs, unused
from tests.deploy.manifests import (
    Obj,
    copy_deploy,
    env_values,
    load,
    manifest,
    one,
    pod_spec,
    render,
    settings_of,
)
from tests.helpers import free_port, http, wait_for

INSTALL_NAMESPACE = "stats-log-collector"
COLLECTOR_SA = "stats-log-collector"
PROCFS_SA = "stats-log-collector-memstat-procfs"
VIRTLET_SA = "stats-log-collector-virtlet-log"


def container_env(file: str, workload_kind: str, container: str, deploy: Path) -> dict[str, str]:
    workload = one(load(deploy / file), workload_kind)
    [found] = [c for c in pod_spec(workload)["containers"] if c["name"] == container]
    return env_values(found)


def populate(cluster: KubeVirtCluster, namespace_setting: str, handler_namespace: str = "kubevirt") -> None:
    namespaces = ("a", "b") if namespace_setting == ALL else tuple(namespace_setting.split(","))
    cluster.populate(
        namespaces, nodes=2, vms_per_namespace=2, log_lines=3, handler_namespace=handler_namespace
    )
    cluster.clear_requests()


def run_env(
    settings: Mapping[str, str], tmp_path: Path, cluster: KubeVirtCluster, **overrides: str
) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    environ.update(settings)
    environ.update(
        {
            "KUBECONFIG": str(cluster.write_kubeconfig(tmp_path / "kubeconfig")),
            "HOME": str(tmp_path),
            "DATA_DIR": str(tmp_path / "data"),
            **overrides,
        }
    )
    return environ


def run_until(
    command: str, environ: Mapping[str, str], tmp_path: Path, ready: Callable[[str], bool], what: str
) -> None:
    """``stats-log-collector <command>`` until ``ready(its stderr)``, then SIGTERM; it must exit 0."""
    stderr = tmp_path / f"{command}.stderr"
    with open(stderr, "wb") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "stats_log_collector", command], env=environ, stderr=errors
        )
    try:
        wait_for(lambda: ready(stderr.read_text()) or process.poll() is not None, what, 60)
        assert process.poll() is None, stderr.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, stderr.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def run_memstat(
    cluster: KubeVirtCluster, settings: Mapping[str, str], tmp_path: Path, **overrides: str
) -> set[Access]:
    """memstat until its first poll succeeded (/readyz), then SIGTERM: the calls of a start and a poll."""
    port = free_port()
    environ = run_env(
        settings,
        tmp_path,
        cluster,
        HTTP_PORT=str(port),
        LOGS_DIR=str(tmp_path / "data" / "logs"),
        POLL_INTERVAL_SECS="1",
        **overrides,
    )
    run_until(
        "memstat",
        environ,
        tmp_path,
        lambda stderr: http(port, "/readyz")[0] == 200,
        "memstat ready",
    )
    return accesses(cluster.requests()) | kubelet_accesses(cluster.kubelet_requests())


def run_logs_collector(cluster: KubeVirtCluster, settings: Mapping[str, str], tmp_path: Path) -> set[Access]:
    """As deployed (not ``--once``): its watches, until its first collection is done, then SIGTERM."""
    environ = run_env(settings, tmp_path, cluster)
    run_until(
        "logs-collector",
        environ,
        tmp_path,
        lambda stderr: "collection done" in stderr,
        "the first collection",
    )
    return accesses(cluster.requests())


def granted(objects: list[Obj], account: str, prefix: str = "") -> set[Grant]:
    return {g for g in grants(objects, INSTALL_NAMESPACE, account) if g.role.startswith(prefix)}


def assert_exact(needed: set[Access], everything: set[Grant], own: set[Grant]) -> None:
    """Every call allowed by the account's grants; every grant of the component's own roles used."""
    assert needed, "the component made no API call: the run proves nothing"
    assert denied(needed, everything) == [], "calls the RBAC would deny"
    assert unused(own, needed) == [], "grants the component never uses"


@pytest.fixture
def variant(tmp_path: Path) -> Path:
    return tmp_path / "deploy"


# ---- the mapping itself -----------------------------------------------------------------------------


def test_requests_map_to_the_checks_the_api_server_makes() -> None:
    assert needs("GET", "/api/v1/namespaces/vms/pods", {"labelSelector": ["x=y"]}) == [
        Access("list", "", "pods", "vms")
    ]
    assert needs("GET", "/api/v1/pods", {}) == [Access("list", "", "pods", None)]
    assert needs("GET", "/api/v1/namespaces/vms/pods", {"watch": ["true"]}) == [
        Access("watch", "", "pods", "vms")
    ]
    assert needs("GET", "/api/v1/namespaces/vms/pods/p/log", {}) == [Access("get", "", "pods/log", "vms")]
    assert needs("GET", "/api/v1/namespaces/vms/pods/p/exec", {}) == [
        Access("get", "", "pods/exec", "vms"),
        Access("create", "", "pods/exec", "vms"),
    ]
    assert needs("GET", "/api/v1/nodes/n1/proxy/stats/summary", {}) == [
        Access("get", "", "nodes/proxy", None)
    ]
    assert needs("PATCH", "/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts/kubevirt", {}) == [
        Access("patch", "kubevirt.io", "kubevirts", "kubevirt")
    ]
    assert needs("GET", "/apis/kubevirt.io/v1", {}) == [] and needs("GET", "/version/", {}) == []
    with pytest.raises(AssertionError):
        needs("POST", "/logs", {})


def test_grants_follow_bindings_and_scopes() -> None:
    objects = render()
    collector = granted(objects, COLLECTOR_SA)
    assert Grant("get", "", "nodes/stats", ALL, "stats-log-collector-memstat-kubelet") in collector
    assert not any(grant.resource == "nodes/proxy" for grant in collector)
    assert Grant("list", "", "pods", "default", "stats-log-collector-memstat-vms") in collector
    assert denied([Access("list", "", "pods", "elsewhere")], collector) == [
        Access("list", "", "pods", "elsewhere")
    ]
    assert denied([Access("list", "", "pods", None)], collector)  # one namespace is not all of them
    assert granted(objects, VIRTLET_SA) == set()


# ---- memstat in the Deployment ----------------------------------------------------------------------


# MEMSTAT_SOURCE (and KUBELET_ACCESS) -> (the components to render with, the settings memstat runs with,
# the sensitive grants that variant must have and no other).
MEMSTAT_VARIANTS: dict[str, tuple[str, dict[str, str], set[str]]] = {
    "kubelet": ("", {"MEMSTAT_SOURCE": "kubelet"}, {"nodes/stats"}),
    "kubelet-proxy": (
        "kubelet-proxy",
        {"MEMSTAT_SOURCE": "kubelet", "KUBELET_ACCESS": "proxy"},
        {"nodes/proxy"},
    ),
    "exec": ("exec-source", {"MEMSTAT_SOURCE": "exec"}, {"pods/exec"}),
    "procfs": ("", {"MEMSTAT_SOURCE": "procfs"}, set()),
}
SENSITIVE = {"pods/exec", "nodes/proxy", "nodes/stats"}
# The kubelet source's direct access (KUBELET_ACCESS) is memstat's from its next release: until its settings
# have it, the kubelet variants cannot run the way the manifests say.
MEMSTAT_KNOWS_KUBELET_ACCESS = "KUBELET_ACCESS" in settings_of(
    next(c for c in COMMANDS if c.name == "memstat")
)


@pytest.mark.parametrize("variant_name", list(MEMSTAT_VARIANTS))
@pytest.mark.parametrize("namespaces", ["default", "a,b", "*"])
def test_memstat_is_granted_exactly_what_it_uses(
    variant_name: str, namespaces: str, kubevirt_cluster: KubeVirtCluster, variant: Path, tmp_path: Path
) -> None:
    components, changes, sensitive = MEMSTAT_VARIANTS[variant_name]
    if changes["MEMSTAT_SOURCE"] == "kubelet" and not MEMSTAT_KNOWS_KUBELET_ACCESS:
        pytest.skip(
            "memstat has no KUBELET_ACCESS setting yet: the kubelet source still reads through nodes/proxy"
        )
    edits = {
        ("base/deployment.yaml", container, "NAMESPACE"): namespaces
        for container in ("memstat", "logs-collector")
    }
    edits[("base/deployment.yaml", "memstat", "MEMSTAT_SOURCE")] = changes["MEMSTAT_SOURCE"]
    deploy = copy_deploy(variant, edits)
    objects = render(deploy, COMPONENTS=components)
    populate(kubevirt_cluster, namespaces)
    settings = {**container_env("base/deployment.yaml", "Deployment", "memstat", deploy), **changes}
    needed = run_memstat(kubevirt_cluster, settings, tmp_path, NODE_NAME="node-01")
    assert_exact(
        needed, granted(objects, COLLECTOR_SA), granted(objects, COLLECTOR_SA, "stats-log-collector-memstat-")
    )
    assert {g.resource for g in granted(objects, COLLECTOR_SA)} & SENSITIVE == sensitive


# ---- the procfs DaemonSet ---------------------------------------------------------------------------


def test_memstat_procfs_daemonset_is_granted_exactly_what_it_uses(
    kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    objects = render(COMPONENTS="procfs")
    settings = env_values(
        pod_spec(one(manifest("components/procfs/memstat-procfs-ds.yaml"), "DaemonSet"))["containers"][0]
    )
    populate(kubevirt_cluster, settings["NAMESPACE"])
    needed = run_memstat(kubevirt_cluster, settings, tmp_path, PROC_ROOT="/proc", NODE_NAME="node-01")
    own = granted(objects, PROCFS_SA)
    assert_exact(needed, own, own)
    assert {g.resource for g in own} == {"pods"}  # no exec, no node proxy, no VMIs


# ---- virtlet-log --------------------------------------------------------------------------------------


def test_virtlet_log_calls_no_api_and_is_granted_nothing(
    kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    """It forwards a console line (real work, same settings) without one request to the API."""
    settings = env_values(pod_spec(one(manifest("base/virtlet-log-ds.yaml"), "DaemonSet"))["containers"][0])
    sandbox = "0b8f4c52-6f0e-4a49-9d0e-6a4d7f0d7a11"
    (tmp_path / "vms" / sandbox).mkdir(parents=True)
    (tmp_path / "pods" / sandbox).mkdir(parents=True)
    (tmp_path / "vms" / sandbox / "vm_0.log").write_text("console line\n")
    output = tmp_path / "pods" / sandbox / "vm_0.log"
    kubevirt_cluster.clear_requests()
    environ = run_env(
        settings,
        tmp_path,
        kubevirt_cluster,
        VIRTLET_VM_LOG_LOCATION=str(tmp_path / "vms"),
        KUBERNETES_POD_LOGS=str(tmp_path / "pods"),
        STATE_DIR=str(tmp_path / "state"),
    )
    process = subprocess.Popen([sys.executable, "-m", "stats_log_collector", "virtlet-log"], env=environ)
    try:
        wait_for(lambda: output.exists() and b"console line" in output.read_bytes(), "the console forwarded")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert kubevirt_cluster.requests() == []
    assert granted(render(COMPONENTS="procfs"), VIRTLET_SA) == set()


# ---- logs-collector -----------------------------------------------------------------------------------

LOGS_VARIANTS = {
    "shipped": {},
    "verbosity": {"LOG_VERBOSITY": "4"},
    "verbosity-hco": {"LOG_VERBOSITY": "4", "HCO_NAMESPACE": "kubevirt-hyperconverged"},
    "all-namespaces": {"NAMESPACE": "*"},
}


@pytest.mark.parametrize("name", list(LOGS_VARIANTS))
def test_logs_collector_is_granted_exactly_what_it_uses(
    name: str, kubevirt_cluster: KubeVirtCluster, variant: Path, tmp_path: Path
) -> None:
    changes = LOGS_VARIANTS[name]
    edits = {("base/deployment.yaml", "logs-collector", var): value for var, value in changes.items()}
    if "NAMESPACE" in changes:
        edits[("base/deployment.yaml", "memstat", "NAMESPACE")] = changes["NAMESPACE"]
    deploy = copy_deploy(variant, edits)
    objects = render(deploy)
    settings = container_env("base/deployment.yaml", "Deployment", "logs-collector", deploy)
    handlers = settings["HCO_NAMESPACE"] or settings["KUBEVIRT_NAMESPACE"]
    populate(kubevirt_cluster, settings["NAMESPACE"], handler_namespace=handlers)
    if settings["HCO_NAMESPACE"]:
        kubevirt_cluster.add_hco_cr(settings["HCO_NAMESPACE"])
    kubevirt_cluster.clear_requests()
    needed = run_logs_collector(kubevirt_cluster, settings, tmp_path)
    assert_exact(
        needed,
        granted(objects, COLLECTOR_SA),
        granted(objects, COLLECTOR_SA, "stats-log-collector-logs-collector-"),
    )


@pytest.mark.skipif(
    not MEMSTAT_KNOWS_KUBELET_ACCESS,
    reason="memstat has no KUBELET_ACCESS setting yet: the kubelet source still reads through nodes/proxy",
)
def test_the_deployment_account_has_nothing_neither_container_uses(
    kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    objects = render()
    settings = {
        name: container_env("base/deployment.yaml", "Deployment", name, Path(__file__).parents[2] / "deploy")
        for name in ("memstat", "logs-collector")
    }
    populate(kubevirt_cluster, settings["memstat"]["NAMESPACE"])
    (tmp_path / "logs").mkdir()
    needed = run_logs_collector(kubevirt_cluster, settings["logs-collector"], tmp_path / "logs")
    kubevirt_cluster.clear_requests()
    (tmp_path / "memstat").mkdir()
    needed |= run_memstat(kubevirt_cluster, settings["memstat"], tmp_path / "memstat")
    assert_exact(needed, granted(objects, COLLECTOR_SA), granted(objects, COLLECTOR_SA))
