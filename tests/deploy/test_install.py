"""`make install` and `make uninstall` with the real kubectl against the test cluster, for every overlay.

The objects are checked by listing them with kubectl, kind by kind, across all namespaces: every object
install renders exists afterwards (with the values the Makefile variables asked for), and none of them,
nor the namespace install created, exists after uninstall.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kubevirt_test_cluster import KubeVirtCluster
from tests.deploy.manifests import ROOT, Obj, copy_deploy, install_sh, render

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

PLURALS = {
    "Namespace": "namespaces",
    "ServiceAccount": "serviceaccounts",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "Deployment": "deployments.apps",
    "DaemonSet": "daemonsets.apps",
    "Service": "services",
    "ClusterRole": "clusterroles.rbac.authorization.k8s.io",
    "ClusterRoleBinding": "clusterrolebindings.rbac.authorization.k8s.io",
    "RoleBinding": "rolebindings.rbac.authorization.k8s.io",
    "ConfigMap": "configmaps",
    "ServiceMonitor": "servicemonitors.monitoring.coreos.com",
    "PodMonitor": "podmonitors.monitoring.coreos.com",
    "PrometheusRule": "prometheusrules.monitoring.coreos.com",
}
Key = tuple[str, str, str]  # kind, namespace ("" when cluster-scoped), name


@pytest.fixture
def environ(kubevirt_cluster: KubeVirtCluster, tmp_path: Path) -> dict[str, str]:
    kubevirt_cluster.populate(("default",), nodes=2, vms_per_namespace=1, log_lines=1)
    kubeconfig = kubevirt_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    return {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}  # HOME: kubectl's cache


def make(environ: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        ["make", "-s", *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def kubectl(environ: dict[str, str], *args: str) -> str:
    assert KUBECTL is not None
    result = subprocess.run([KUBECTL, *args], env=environ, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def listed(environ: dict[str, str]) -> set[Key]:
    """Every object of the kinds we install, as kubectl lists them."""
    found: set[Key] = set()
    template = "{range .items[*]}{.metadata.namespace}/{.metadata.name}{'\\n'}{end}"
    for kind, plural in PLURALS.items():
        for line in kubectl(environ, "get", plural, "--all-namespaces", "-o", f"jsonpath={template}").split():
            namespace, name = line.split("/")
            found.add((kind, namespace, name))
    return found


def keys(objects: list[Obj]) -> set[Key]:
    return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects}


def get(environ: dict[str, str], *args: str) -> str:
    return kubectl(environ, "get", *args)


@pytest.mark.parametrize("target", ["uninstall", "unistall"])
def test_install_creates_every_object_and_uninstall_deletes_them(
    environ: dict[str, str], target: str
) -> None:
    variables = [
        "INSTALL_NAMESPACE=slc",
        "COMPONENTS=procfs",
        "STORAGE_CLASS=fast",
        "REGISTRY=quay.io/me",
        "TAG=t1",
    ]
    before = listed(environ)
    output = make(environ, "install", *variables)
    expected = keys(render(INSTALL_NAMESPACE="slc", COMPONENTS="procfs")) | {("Namespace", "", "slc")}
    assert len(expected) == 23  # 9 ClusterRoles, 5 bindings, 8 workload objects, the namespace
    assert listed(environ) - before == expected
    assert output.count(" created") == len(expected)
    jsonpath = "-o=jsonpath={.spec.template.spec.containers[*].image}"
    image = "quay.io/me/stats-log-collector:t1"
    assert get(environ, "deployment", "-n", "slc", "stats-log-collector", jsonpath) == f"{image} {image}"
    assert (
        get(environ, "pvc", "-n", "slc", "stats-log-collector-data", "-o=jsonpath={.spec.storageClassName}")
        == "fast"
    )
    subject = "-o=jsonpath={.subjects[0].namespace}"
    binding = "stats-log-collector-memstat-vms.slc"
    assert get(environ, "rolebinding", "-n", "default", binding, subject) == "slc"  # where the VMs are

    again = make(environ, "install", *variables).splitlines()
    assert again and all(line.endswith(" unchanged") for line in again)  # idempotent; namespace kept

    make(environ, target, *variables)
    assert listed(environ) == before
    assert kubectl(environ, "get", "namespaces", "-o", "name").split() == [
        "namespace/default",
        "namespace/kubevirt",
    ]


def test_uninstall_keeps_a_namespace_it_did_not_create(
    environ: dict[str, str], kubevirt_cluster: KubeVirtCluster
) -> None:
    kubevirt_cluster.add_namespace("mine")
    make(environ, "install", "INSTALL_NAMESPACE=mine")
    assert "deployment.apps/stats-log-collector" in get(environ, "deployments", "-n", "mine", "-o", "name")
    make(environ, "uninstall", "INSTALL_NAMESPACE=mine")
    assert get(environ, "namespace", "mine", "-o", "name") == "namespace/mine\n"
    assert get(environ, "all", "-n", "mine", "-o", "name") == ""
    assert get(environ, "pvc,serviceaccounts", "-n", "mine", "-o", "name") == ""


def test_reinstall_after_a_settings_change_removes_the_old_bindings(
    environ: dict[str, str], kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    kubevirt_cluster.add_namespace("vms")
    shipped = install_sh(ROOT / "deploy", "install", INSTALL_NAMESPACE="slc", **cluster_env(environ))
    assert shipped.returncode == 0, shipped.stderr
    edits = {("base/deployment.yaml", "memstat", "MEMSTAT_SOURCE"): "exec"}
    for container in ("memstat", "logs-collector"):
        edits[("base/deployment.yaml", container, "NAMESPACE")] = "default,vms"
    deploy = copy_deploy(tmp_path / "deploy", edits)
    changed = install_sh(deploy, "install", INSTALL_NAMESPACE="slc", **cluster_env(environ))
    assert changed.returncode == 0, changed.stderr
    bindings = {key for key in listed(environ) if key[0].endswith("RoleBinding")}
    assert bindings == {
        ("RoleBinding", "default", "stats-log-collector-memstat-vms.slc"),
        ("RoleBinding", "default", "stats-log-collector-memstat-exec.slc"),
        ("RoleBinding", "default", "stats-log-collector-logs-collector-vms.slc"),
        ("RoleBinding", "vms", "stats-log-collector-memstat-vms.slc"),
        ("RoleBinding", "vms", "stats-log-collector-memstat-exec.slc"),
        ("RoleBinding", "vms", "stats-log-collector-logs-collector-vms.slc"),
        ("RoleBinding", "kubevirt", "stats-log-collector-logs-collector-handlers.slc"),
    }  # the kubelet source's ClusterRoleBinding is gone


def cluster_env(environ: dict[str, str]) -> dict[str, str]:
    return {name: environ[name] for name in ("KUBECONFIG", "HOME")}


def test_two_installations_share_the_cluster_roles_until_the_last_goes(environ: dict[str, str]) -> None:
    before = listed(environ)
    make(environ, "install", "INSTALL_NAMESPACE=one")
    make(environ, "install", "INSTALL_NAMESPACE=two")
    roles = {key for key in listed(environ) if key[0] == "ClusterRole"}
    assert len(roles) == 9
    kept = make(environ, "uninstall", "INSTALL_NAMESPACE=one")
    assert "ClusterRoles kept: another installation still uses them" in kept
    remaining = listed(environ) - before
    assert roles <= remaining and not any(namespace == "one" for _, namespace, _ in remaining)
    assert ("ClusterRoleBinding", "", "stats-log-collector-memstat-kubelet.two") in remaining
    make(environ, "uninstall", "INSTALL_NAMESPACE=two")
    assert listed(environ) == before


# OVERLAY, COMPONENTS, and how many objects install adds (the namespace included).
OVERLAY_INSTALLS = {
    "default": ("default", "", 20),
    "openshift-with-procfs": ("openshift", "procfs", 27),
    "procfs": ("procfs", "", 23),
    "monitoring": ("monitoring", "", 24),
}


@pytest.mark.parametrize("name", list(OVERLAY_INSTALLS))
def test_each_overlay_installs_and_uninstall_leaves_nothing(
    environ: dict[str, str], kubevirt_cluster: KubeVirtCluster, name: str
) -> None:
    """Installed with OVERLAY (and COMPONENTS), uninstalled without them: nothing is left either way."""
    overlay, components, count = OVERLAY_INSTALLS[name]
    kubevirt_cluster.add_namespace("openshift-cnv")  # OpenShift Virtualization's (HCO_NAMESPACE)
    variables = ["INSTALL_NAMESPACE=slc", f"OVERLAY={overlay}", f"COMPONENTS={components}"]
    before = listed(environ)
    make(environ, "install", *variables)
    expected = keys(render(INSTALL_NAMESPACE="slc", OVERLAY=overlay, COMPONENTS=components))
    added = listed(environ) - before
    assert added == expected | {("Namespace", "", "slc")} and len(added) == count
    roles = get(environ, "clusterrolebindings,rolebindings", "-A", "-o", "jsonpath={.items[*].roleRef.name}")
    assert "stats-log-collector-memstat-kubelet" in roles.split()  # nodes/stats, never nodes/proxy
    assert "stats-log-collector-memstat-kubelet-proxy" not in roles.split()
    make(environ, "uninstall", "INSTALL_NAMESPACE=slc")
    assert listed(environ) == before
