"""Every overlay and component as ``kubectl kustomize`` (real kubectl) renders it: valid against the
Kubernetes schemas, admitted on OpenShift, and granting nothing sensitive the settings do not ask for.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from stats_log_collector.cli import COMMANDS
from tests.deploy.manifests import (
    COMPONENTS,
    DEPLOY,
    KUBECTL,
    OVERLAYS,
    Obj,
    command_of,
    kustomize,
    one,
    pod_spec,
    render,
    settings_of,
)
from tests.deploy.openshift_scc import BY_NAME, RESTRICTED_V2, violations

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (it renders the overlays)")
LATEST_KUBERNETES = "1.35"
MONITORING_GROUP = "monitoring.coreos.com/v1"


def overlay(name: str) -> list[Obj]:
    return kustomize(DEPLOY / "overlays" / name)


@pytest.mark.parametrize("name", OVERLAYS)
def test_each_overlay_renders_valid_kubernetes_objects(name: str) -> None:
    objects = overlay(name)
    assert one(objects, "Deployment", "stats-log-collector")
    for obj in objects:
        if obj["apiVersion"] == MONITORING_GROUP:
            continue  # the Operator's kinds: test_monitoring.py validates them against their CRDs
        try:
            kubernetes_validate.validate(obj, LATEST_KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {obj['kind']} {obj['metadata']['name']}: {error.message}")


def test_the_overlays_differ_from_the_base_only_as_documented() -> None:
    base = {(o["kind"], o["metadata"]["name"]) for o in kustomize(DEPLOY / "base")}
    assert {(o["kind"], o["metadata"]["name"]) for o in overlay("default")} == base
    procfs = {(o["kind"], o["metadata"]["name"]) for o in overlay("procfs")} - base
    assert procfs == {
        ("DaemonSet", "stats-log-collector-memstat-procfs"),
        ("ServiceAccount", "stats-log-collector-memstat-procfs"),
    }
    monitoring = {(o["kind"], o["metadata"]["name"]) for o in overlay("monitoring")} - base
    assert {kind for kind, _ in monitoring} == {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"}
    openshift = {(o["kind"], o["metadata"]["name"]) for o in overlay("openshift")} - base
    assert openshift == {
        ("ClusterRole", "stats-log-collector-scc-virtlet-log"),
        ("ClusterRole", "stats-log-collector-scc-memstat-procfs"),
    }


# ---- OpenShift --------------------------------------------------------------------------------------


def openshift_install(install_namespace: str = "stats-log-collector") -> list[Obj]:
    return render(OVERLAY="openshift", COMPONENTS="procfs", INSTALL_NAMESPACE=install_namespace)


def test_the_openshift_deployment_passes_restricted_v2() -> None:
    deployment = one(openshift_install(), "Deployment", "stats-log-collector")
    pod = pod_spec(deployment)
    assert violations(pod, RESTRICTED_V2) == []
    context = pod["securityContext"]
    assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(context)  # OpenShift assigns them
    assert context["runAsNonRoot"] is True and context["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False and security["runAsNonRoot"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert not {"runAsUser", "runAsGroup"} & set(security)
    env = {e["name"]: e.get("value") for c in pod["containers"] for e in c["env"]}
    assert env["HCO_NAMESPACE"] == "openshift-cnv"


def test_the_restricted_v2_check_can_fail() -> None:
    default = pod_spec(one(overlay("default"), "Deployment", "stats-log-collector"))
    assert "pod: fsGroup is assigned by OpenShift (MustRunAs)" in violations(default, RESTRICTED_V2)
    assert any("runAsUser" in found for found in violations(default, RESTRICTED_V2))
    virtlet = pod_spec(one(overlay("default"), "DaemonSet", "stats-log-collector-virtlet-log"))
    assert any("hostPath" in found for found in violations(virtlet, RESTRICTED_V2))


def scc_grants(objects: list[Obj]) -> dict[str, set[str]]:
    """ServiceAccount -> the SCCs its bindings let it `use` (security.openshift.io)."""
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
    found: dict[str, set[str]] = {}
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        for rule in roles[binding["roleRef"]["name"]]["rules"]:
            if rule["apiGroups"] == ["security.openshift.io"]:
                assert rule["resources"] == ["securitycontextconstraints"] and rule["verbs"] == ["use"]
                for subject in binding["subjects"]:
                    found.setdefault(subject["name"], set()).update(rule["resourceNames"])
    return found


def test_each_openshift_daemonset_passes_the_scc_it_is_granted_and_nothing_wider() -> None:
    objects = openshift_install("vm-tools")
    granted = scc_grants(objects)
    expected = {
        "stats-log-collector-virtlet-log": {"hostmount-anyuid"},
        "stats-log-collector-memstat-procfs": {"privileged"},
    }
    assert granted == expected  # the Deployment's account gets none: restricted-v2 is everyone's
    for daemonset in (o for o in objects if o["kind"] == "DaemonSet"):
        pod = pod_spec(daemonset)
        [scc] = granted[pod["serviceAccountName"]]
        assert violations(pod, BY_NAME[scc]) == [], daemonset["metadata"]["name"]
        assert violations(pod, RESTRICTED_V2), "a DaemonSet that restricted-v2 admits needs no SCC"
    virtlet = pod_spec(one(objects, "DaemonSet", "stats-log-collector-virtlet-log"))
    assert violations(virtlet, BY_NAME["hostmount-anyuid"]) == []  # hostPath and root, nothing more
    bindings = [o for o in objects if o["kind"] == "RoleBinding" and "scc" in o["roleRef"]["name"]]
    assert {b["metadata"]["namespace"] for b in bindings} == {"vm-tools"}  # only in the install namespace
    assert not [o for o in objects if o["kind"] == "ClusterRoleBinding" and "scc" in o["roleRef"]["name"]]


def test_the_procfs_scc_is_bound_only_with_the_procfs_daemonset() -> None:
    granted = scc_grants(render(OVERLAY="openshift"))
    assert granted == {"stats-log-collector-virtlet-log": {"hostmount-anyuid"}}


def test_the_image_runs_as_any_uid_of_group_0() -> None:
    """The Dockerfile gives /data to group 0, group-writable (tests/image runs it as such a UID)."""
    text = (DEPLOY.parent / "Dockerfile").read_text()
    assert "chown 1001:0 /data" in text and "chmod 2775 /data" in text


# ---- sensitive grants, in every install variant (kubernetes#83465) ---------------------------------

SOURCES = ("kubelet", "exec", "procfs")


def install_variants() -> list[tuple[str, str]]:
    """Every overlay with every subset of the components it does not hold already."""
    subsets = [
        subset for size in range(len(COMPONENTS) + 1) for subset in itertools.combinations(COMPONENTS, size)
    ]
    return [(name, ",".join(subset)) for name in OVERLAYS for subset in subsets if name not in subset]


def test_no_variant_grants_what_its_settings_do_not_ask_for() -> None:
    """nodes/proxy only with KUBELET_ACCESS=proxy, pods/exec only with MEMSTAT_SOURCE=exec, never a `*`,
    and cluster-wide bindings only for the node roles (or NAMESPACE=*)."""
    checked = 0
    for name, components in install_variants():
        objects = render(OVERLAY=name, COMPONENTS=components)
        deployment = one(objects, "Deployment", "stats-log-collector")
        memstat = next(c for c in pod_spec(deployment)["containers"] if c["name"] == "memstat")
        env = {e["name"]: e.get("value", "") for e in memstat["env"]}
        source, access = env["MEMSTAT_SOURCE"], env.get("KUBELET_ACCESS", "direct")
        resources = granted_resources(objects)
        where = f"OVERLAY={name} COMPONENTS={components}"
        assert ("nodes/proxy" in resources) is (source == "kubelet" and access == "proxy"), where
        assert ("pods/exec" in resources) is (source == "exec"), where
        assert ("nodes/stats" in resources) is (source == "kubelet" and access == "direct"), where
        for rule in (r for o in objects if o["kind"] in ("ClusterRole", "Role") for r in o["rules"]):
            for key in ("verbs", "resources", "apiGroups", "resourceNames"):
                assert "*" not in rule.get(key, []), f"{where}: {key}"
            assert "nonResourceURLs" not in rule
        for binding in (o for o in objects if o["kind"] == "ClusterRoleBinding"):
            assert binding["roleRef"]["name"].startswith("stats-log-collector-memstat-kubelet"), where
        checked += 1
    assert checked == 2 * 2 ** len(COMPONENTS) + 2 * 2 ** (len(COMPONENTS) - 1)


def granted_resources(objects: list[Obj]) -> set[str]:
    """The resources of every rule of every ClusterRole some binding of the render refers to."""
    bound = {o["roleRef"]["name"] for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")}
    rules: list[dict[str, Any]] = [
        rule
        for o in objects
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] in bound
        for rule in o["rules"]
    ]
    return {resource for rule in rules for resource in rule["resources"]}


def test_kubelet_proxy_and_exec_are_components_a_user_adds(tmp_path: Path) -> None:
    """The default install reads the kubelets directly: no nodes/proxy, and says nothing about it."""
    objects = render()
    assert "nodes/proxy" not in granted_resources(objects)
    assert "pods/exec" not in granted_resources(objects)
    memstat = next(
        c
        for c in pod_spec(one(objects, "Deployment", "stats-log-collector"))["containers"]
        if c["name"] == "memstat"
    )
    assert not any(e["name"].startswith("KUBELET_") for e in memstat["env"])  # the defaults hold


def test_every_env_entry_of_every_variant_is_a_real_setting() -> None:
    """What the overlays and components patch in (HCO_NAMESPACE, MEMSTAT_SOURCE, KUBELET_ACCESS,
    METRICS_PORT) are settings of the container's subcommand, with values they accept."""
    memstat = settings_of(next(c for c in COMMANDS if c.name == "memstat"))
    if "KUBELET_ACCESS" not in memstat:
        pytest.skip("memstat has no KUBELET_ACCESS setting yet (deploy/components/kubelet-proxy sets it)")
    for name in OVERLAYS:
        components = ",".join(c for c in COMPONENTS if c != name and c != "exec-source")
        for obj in render(OVERLAY=name, COMPONENTS=components):
            if obj["kind"] not in ("Deployment", "DaemonSet"):
                continue
            for container in pod_spec(obj)["containers"]:
                settings = settings_of(command_of(container))
                for entry in container["env"]:
                    assert entry["name"] in settings, f"{name}: {container['name']}: {entry['name']}"
                    if "value" in entry:
                        settings[entry["name"]][1].parse(entry["value"])
