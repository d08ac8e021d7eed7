"""deploy/: valid for every Kubernetes version we claim, every env entry a real setting, locked down.

Schemas: kubernetes-validate ships the OpenAPI-derived JSON schemas of each Kubernetes release; the strict
ones reject unknown fields, which is how a misspelt or misplaced key is caught offline.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from stats_log_collector.config import Derived, byte_size
from stats_log_collector.memstat.procfs import cgroup_root_for
from tests.deploy.manifests import (
    COMPONENTS,
    DEPLOY,
    KUBECTL,
    MANIFEST_FILES,
    OVERLAYS,
    ROOT,
    WORKLOAD_KINDS,
    Obj,
    all_manifest_objects,
    command_of,
    copy_deploy,
    env_values,
    install_sh,
    manifest,
    one,
    plan,
    pod_spec,
    render,
    settings_of,
    workloads,
)

# The versions README.md claims ("Kubernetes 1.28 to 1.35").
SUPPORTED_KUBERNETES = ("1.28", "1.29", "1.30", "1.31", "1.32", "1.33", "1.34", "1.35")

# Settings that only make sense outside the cluster: in a pod the ServiceAccount is the credential.
OUT_OF_CLUSTER = {"KUBE_API_URL", "KUBECONFIG", "KUBE_CONTEXT"}
# The kubelet source's connection settings: their defaults (direct access, the node's addresses in
# metrics-server's order, the ServiceAccount's CA) are what a pod wants, and a component (kubelet-proxy)
# sets the one a user may change, so the Deployment does not list them.
KUBELET_CONNECTION = {"KUBELET_ACCESS", "KUBELET_ADDRESS_TYPES", "KUBELET_CA_FILE", "KUBELET_INSECURE_TLS"}
# Settings whose value comes from the downward API rather than a literal.
FROM_DOWNWARD_API = {
    ("components/procfs/memstat-procfs-ds.yaml", "memstat", "NODE_NAME")
}  # the node of the processes
# Values that are deliberately not the default, each explained by a comment in the manifest.
NOT_DEFAULT = {
    ("base/deployment.yaml", "logs-collector", "DATA_DIR"): "/data/logs",
    ("base/deployment.yaml", "logs-collector", "MAX_DATA_BYTES"): "4294967296",
    ("components/procfs/memstat-procfs-ds.yaml", "memstat", "MEMSTAT_SOURCE"): "procfs",
    ("components/procfs/memstat-procfs-ds.yaml", "memstat", "PROC_ROOT"): "/host/proc",
    (
        "components/procfs/memstat-procfs-ds.yaml",
        "memstat",
        "DATA_DIR",
    ): "/var/lib/stats-log-collector/memstat",
    # The node's folder of Virtlet's consoles; the default, /var/log/vms, is how Virtlet's containers see it.
    ("base/virtlet-log-ds.yaml", "virtlet-log", "VIRTLET_VM_LOG_LOCATION"): "/var/log/virtlet/vms",
}
# The settings of the original stats-logs-collector (github.com/fossedihelm/stats-logs-collector: its
# deployment.yaml and README): all must be in ours.
ORIGINAL_SETTINGS = {
    ("base/deployment.yaml", "memstat"): {"DATA_DIR", "NAMESPACE", "POLL_INTERVAL_SECS", "HTTP_PORT"},
    ("base/deployment.yaml", "logs-collector"): {
        "DATA_DIR",
        "KUBEVIRT_NAMESPACE",
        "HCO_NAMESPACE",
        "NAMESPACE",
    },
    ("base/virtlet-log-ds.yaml", "virtlet-log"): {"VIRTLET_VM_LOG_LOCATION", "SLEEP_SECONDS"},
}
# Where a container may differ from the locked-down baseline, and why (each also commented inline).
RUNS_AS_ROOT = {
    ("base/virtlet-log-ds.yaml", "virtlet-log"),  # writes root's /var/log/pods, reads root's console files
    (
        "components/procfs/memstat-procfs-ds.yaml",
        "memstat",
    ),  # writes its CSV in a hostPath directory the node owns
}
ADDED_CAPABILITIES = {
    ("components/procfs/memstat-procfs-ds.yaml", "memstat"): ["SYS_PTRACE"]
}  # PSS of other users' QEMU
HOST_PID = {"components/procfs/memstat-procfs-ds.yaml"}


def containers() -> list[tuple[str, Obj, Obj]]:
    return [(file, obj, c) for file, obj in workloads() for c in pod_spec(obj)["containers"]]


def everything_rendered() -> list[Obj]:
    """What install applies, with every optional part in: the procfs DaemonSet, exec, verbosity, HCO."""
    return render(COMPONENTS="procfs")


# ---- schemas ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES)
def test_every_object_validates_against_the_strict_schema(version: str, tmp_path: Path) -> None:
    variants = copy_deploy(
        tmp_path / "deploy",
        {
            ("base/deployment.yaml", "memstat", "MEMSTAT_SOURCE"): "exec",
            ("base/deployment.yaml", "memstat", "NAMESPACE"): "*",
            ("base/deployment.yaml", "logs-collector", "NAMESPACE"): "*",
            ("base/deployment.yaml", "logs-collector", "LOG_VERBOSITY"): "4",
        },
    )
    objects = [obj for _, obj in all_manifest_objects()]
    objects += everything_rendered() + render(variants, COMPONENTS="procfs", STORAGE_CLASS="fast")
    objects += render(OVERLAY="openshift", COMPONENTS="procfs,kubelet-proxy,monitoring")
    # the Operator's kinds: test_monitoring.py validates them against their CRDs
    objects = [obj for obj in objects if obj["apiVersion"] != "monitoring.coreos.com/v1"]
    kinds = {obj["kind"] for obj in objects}
    assert {"Deployment", "DaemonSet", "PersistentVolumeClaim", "Service", "ServiceAccount"} <= kinds
    assert {"ClusterRole", "RoleBinding", "ClusterRoleBinding"} <= kinds
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']} on {version}: {error.message}")


def test_the_schema_check_can_fail() -> None:
    deployment = one(manifest("base/deployment.yaml"), "Deployment")
    pod_spec(deployment)["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, SUPPORTED_KUBERNETES[-1], strict=True)


def test_readme_claims_the_versions_we_validate() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"Kubernetes {SUPPORTED_KUBERNETES[0]} to {SUPPORTED_KUBERNETES[-1]}" in readme


# ---- settings ---------------------------------------------------------------------------------------


def test_every_env_entry_is_a_real_setting_with_a_valid_value() -> None:
    checked = 0
    for file, _, container in containers():
        settings = settings_of(command_of(container))
        for entry in container.get("env", []):
            name = entry["name"]
            assert name in settings, (
                f"{file} {container['name']}: {name} is not a setting of {container['args']}"
            )
            if (file, container["name"], name) in FROM_DOWNWARD_API:
                assert "valueFrom" in entry, f"{file} {container['name']}: {name} comes from the downward API"
                continue
            assert "value" in entry and isinstance(entry["value"], str), (
                f"{file}: {name} needs a string value"
            )
            _, spec = settings[name]
            try:
                spec.parse(entry["value"].strip())
            except ValueError as error:
                pytest.fail(f"{file} {container['name']}: {name}={entry['value']!r}: {error}")
            checked += 1
    assert checked > 40


def test_every_setting_is_present_with_its_default() -> None:
    for file, _, container in containers():
        values = env_values(container)
        settings = settings_of(command_of(container))
        downward = {name for f, c, name in FROM_DOWNWARD_API if (f, c) == (file, container["name"])}
        primary = {name for name, (_, spec) in settings.items() if name == spec.env}  # not the aliases
        missing = primary - set(values) - OUT_OF_CLUSTER - downward - KUBELET_CONNECTION
        assert not missing, f"{file} {container['name']}: no env entry for {sorted(missing)}"
        parsed = {name: settings[name][1].parse(value.strip()) for name, value in values.items()}
        for name, value in values.items():
            field, _ = settings[name]
            key = (file, container["name"], name)
            if key in NOT_DEFAULT:
                assert value == NOT_DEFAULT[key], f"{key}: documented as {NOT_DEFAULT[key]!r}"
                commented = re.compile(rf"^\s*- name: {name}\s+#", re.M)
                assert commented.search((DEPLOY / file).read_text()), f"{key}: say why, in a comment"
                continue
            default = field.default
            if isinstance(default, Derived):  # e.g. LOGS_DIR = $DATA_DIR/logs
                fields = {settings[n][0].name: v for n, v in parsed.items()}
                default = default.compute(fields)
            assert parsed[name] == default, f"{file} {container['name']}: {name}={value!r} is not the default"


def test_the_original_settings_are_all_there() -> None:
    for (file, name), expected in ORIGINAL_SETTINGS.items():
        container = next(c for f, _, c in containers() if f == file and c["name"] == name)
        assert expected <= set(env_values(container)), f"{file} {name}"


def test_memstat_serves_what_logs_collector_writes_on_the_shared_volume() -> None:
    deployment = one(manifest("base/deployment.yaml"), "Deployment")
    by_name = {c["name"]: c for c in pod_spec(deployment)["containers"]}
    memstat, logs = env_values(by_name["memstat"]), env_values(by_name["logs-collector"])
    assert logs["DATA_DIR"] == memstat["LOGS_DIR"] == "/data/logs"
    assert memstat["DATA_DIR"] == "/data"
    for container in by_name.values():
        assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    [volume] = [v for v in pod_spec(deployment)["volumes"] if v["name"] == "data"]
    pvc = one(manifest("base/deployment.yaml"), "PersistentVolumeClaim")
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert memstat["NAMESPACE"] == logs["NAMESPACE"]


def test_the_pvc_is_10gi_rwo_and_the_budgets_fit_in_it() -> None:
    pvc = one(manifest("base/deployment.yaml"), "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert "storageClassName" not in pvc["spec"]  # the cluster's default unless STORAGE_CLASS is given
    [rendered] = [obj for obj in render(STORAGE_CLASS="fast-ssd") if obj["kind"] == "PersistentVolumeClaim"]
    assert rendered["spec"]["storageClassName"] == "fast-ssd"
    deployment = one(manifest("base/deployment.yaml"), "Deployment")
    env = {k: v for c in pod_spec(deployment)["containers"] for k, v in env_values(c).items()}
    budget = sum(byte_size(env[name]) for name in ("MAX_CSV_BYTES", "MAX_ARCHIVE_BYTES", "MAX_DATA_BYTES"))
    assert budget < byte_size("10Gi")


def test_service_and_probes_use_http_port() -> None:
    objects = manifest("base/deployment.yaml")
    memstat = next(c for c in pod_spec(one(objects, "Deployment"))["containers"] if c["name"] == "memstat")
    port = int(env_values(memstat)["HTTP_PORT"])
    assert memstat["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert memstat["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert memstat["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = one(objects, "Service")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    procfs = pod_spec(one(manifest("components/procfs/memstat-procfs-ds.yaml"), "DaemonSet"))["containers"][0]
    assert procfs["ports"][0]["containerPort"] == int(env_values(procfs)["HTTP_PORT"])


def test_hostpaths_are_where_the_settings_point() -> None:
    virtlet = one(manifest("base/virtlet-log-ds.yaml"), "DaemonSet")
    container = pod_spec(virtlet)["containers"][0]
    env = env_values(container)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    host = {v["name"]: v["hostPath"]["path"] for v in pod_spec(virtlet)["volumes"]}
    for variable, read_only in (
        ("VIRTLET_VM_LOG_LOCATION", True),
        ("KUBERNETES_POD_LOGS", False),
        ("STATE_DIR", False),
    ):
        mount = mounts[env[variable]]
        assert host[mount["name"]] == env[variable]  # same path in the container as on the node
        assert mount.get("readOnly", False) is read_only
    procfs = one(manifest("components/procfs/memstat-procfs-ds.yaml"), "DaemonSet")
    container = pod_spec(procfs)["containers"][0]
    env = env_values(container)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    host = {v["name"]: v["hostPath"]["path"] for v in pod_spec(procfs)["volumes"] if "hostPath" in v}
    assert host[mounts[env["PROC_ROOT"]]["name"]] == "/proc" and mounts[env["PROC_ROOT"]]["readOnly"] is True
    assert host[mounts[env["DATA_DIR"]]["name"]] == env["DATA_DIR"]
    # QEMU's cgroup limit: the node's hierarchy where memstat looks for it, beside PROC_ROOT
    cgroups = str(cgroup_root_for(env["PROC_ROOT"]))
    assert host[mounts[cgroups]["name"]] == "/sys/fs/cgroup" and mounts[cgroups]["readOnly"] is True
    [node_name] = [e for e in container["env"] if e["name"] == "NODE_NAME"]
    assert node_name["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert "NODE_NAME" in settings_of(command_of(container))  # memstat reads it (MemstatSettings.node_name)


def test_virtlet_log_reads_the_folder_virtlet_writes_on_the_node() -> None:
    """Virtlet's DaemonSet keeps the consoles in the host's /var/log/virtlet/vms, seen as /var/log/vms only in
    its own containers (Mirantis/virtlet deploy/data/virtlet-ds.yaml: the vms-log volume; v0.8.2
    deploy/virtlet-ds.yaml gave its virtlet-log container the same hostPath). What install applies must
    mount that host folder, read-only, where VIRTLET_VM_LOG_LOCATION points."""
    [daemonset] = [
        obj
        for obj in render()
        if obj["kind"] == "DaemonSet" and obj["metadata"]["name"] == "stats-log-collector-virtlet-log"
    ]
    container = pod_spec(daemonset)["containers"][0]
    [mount] = [
        m
        for m in container["volumeMounts"]
        if m["mountPath"] == env_values(container)["VIRTLET_VM_LOG_LOCATION"]
    ]
    [volume] = [v for v in pod_spec(daemonset)["volumes"] if v["name"] == mount["name"]]
    assert volume["hostPath"]["path"] == "/var/log/virtlet/vms"
    assert mount["readOnly"] is True


def test_daemonsets_run_on_every_node() -> None:
    for _, workload in workloads():
        if workload["kind"] == "DaemonSet":
            assert {"operator": "Exists"} in pod_spec(workload)["tolerations"]


def test_image_is_the_one_make_image_builds() -> None:
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None
    made = subprocess.run(
        ["make", "-s", "-n", "image"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    image = f"localhost:5000/stats-log-collector:{version.group(1)}"
    assert made.split()[-2:] == [image, "."]
    for _, _, container in containers():
        assert container["image"] == image
    custom = render(COMPONENTS="procfs", IMAGE="quay.io/me/slc:dev")
    assert {
        c["image"]
        for obj in custom
        if obj["kind"] in ("Deployment", "DaemonSet")
        for c in pod_spec(obj)["containers"]
    } == {"quay.io/me/slc:dev"}


def test_install_sh_reads_every_env_entry_as_yaml_does(tmp_path: Path) -> None:
    """install.sh's reading of the rendered `- name:` / `value:` pairs agrees with a YAML parser on every
    entry of every workload, in every overlay and with every component."""
    probe = tmp_path / "probe.sh"
    probe.write_text(
        (DEPLOY / "install.sh").read_text().split("\ncase ${1:-} in")[0]
        + f'\nhere="{DEPLOY}"\nrendered=$(kustomize)\nkind=$1 name=$2\nshift 2\n'
        + 'for var in "$@"; do env_values "$kind" "$name" "$var" | sed "s/^/$var=/"; done\n'
    )
    checked = 0
    for overlay in OVERLAYS:
        components = ",".join(COMPONENTS) if overlay == "default" else ""
        for obj in render(OVERLAY=overlay, COMPONENTS=components):
            if obj["kind"] not in WORKLOAD_KINDS:
                continue
            expected: dict[str, list[str]] = {}
            for container in pod_spec(obj)["containers"]:
                for name, value in env_values(container).items():
                    expected.setdefault(name, []).append(value)
            environ = {**os.environ, "OVERLAY": overlay, "COMPONENTS": components}
            args = ["sh", str(probe), obj["kind"], obj["metadata"]["name"], *expected]
            lines = subprocess.run(args, capture_output=True, text=True, env=environ).stdout.splitlines()
            for name, values in expected.items():
                read = [line.split("=", 1)[1] for line in lines if line.split("=", 1)[0] == name]
                assert read == values or (values == [""] and read in ([], [""])), f"{overlay} {name}: {read}"
                checked += 1
    assert checked > 100


def kustomize_only(tmp_path: Path) -> str:
    """A KUBECTL that renders (kubectl kustomize) and fails on anything that would touch a cluster."""
    script = tmp_path / "kubectl-offline"
    script.write_text(f'#!/bin/sh\n[ "$1" = kustomize ] || exit 99\nexec {KUBECTL} "$@"\n')
    script.chmod(0o755)
    return str(script)


def test_a_bad_setting_stops_install_before_the_cluster(tmp_path: Path) -> None:
    deploy = copy_deploy(
        tmp_path / "deploy", {("base/deployment.yaml", "memstat", "MEMSTAT_SOURCE"): "magic"}
    )
    result = install_sh(deploy, "install", KUBECTL=kustomize_only(tmp_path))
    assert result.returncode == 2
    assert "MEMSTAT_SOURCE must be kubelet, exec or procfs" in result.stderr
    deploy2 = copy_deploy(
        tmp_path / "deploy2", {("base/deployment.yaml", "logs-collector", "NAMESPACE"): "other"}
    )
    result = install_sh(deploy2, "render")
    assert result.returncode == 2 and "the containers disagree on NAMESPACE" in result.stderr


# ---- security ---------------------------------------------------------------------------------------


def test_every_container_is_locked_down_but_for_documented_exceptions() -> None:
    for file, workload, container in containers():
        key = (file, container["name"])
        pod = pod_spec(workload)
        where = f"{file} {container['name']}"
        context: dict[str, Any] = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["capabilities"]["drop"] == ["ALL"], where
        assert context.get("capabilities", {}).get("add", []) == ADDED_CAPABILITIES.get(key, []), where
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert not context.get("privileged", False), where
        if key in RUNS_AS_ROOT:
            assert pod["securityContext"]["runAsUser"] == 0, where
            assert "# Exception: root." in (DEPLOY / file).read_text(), f"{where}: undocumented"
        else:
            assert context["runAsNonRoot"] is True and pod["securityContext"]["runAsNonRoot"] is True, where
            assert pod["securityContext"]["runAsUser"] == 1001, where  # the Dockerfile's USER
        if key in ADDED_CAPABILITIES:
            assert "# Exception: SYS_PTRACE" in (DEPLOY / file).read_text(), where
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, where


def test_host_access_only_where_documented() -> None:
    for file, workload in workloads():
        pod = pod_spec(workload)
        text = (DEPLOY / file).read_text()
        assert pod.get("hostPID", False) is (file in HOST_PID), file
        assert not pod.get("hostNetwork", False) and not pod.get("hostIPC", False), file
        if file in HOST_PID:
            assert "# Exception: hostPID." in text
        host_paths = [v for v in pod.get("volumes", []) if "hostPath" in v]
        if workload["kind"] == "Deployment":
            assert not host_paths
        elif host_paths:
            assert "# Exception: hostPath volumes" in text, file


def test_every_workload_has_its_own_service_account() -> None:
    accounts = []
    for file, workload in workloads():
        pod = pod_spec(workload)
        account = pod["serviceAccountName"]
        assert account != "default"
        one(manifest(file), "ServiceAccount", account)
        assert isinstance(pod["automountServiceAccountToken"], bool), (
            f"{file}: say whether a token is mounted"
        )
        accounts.append(account)
    assert len(accounts) == len(set(accounts)) == 3
    virtlet = one(manifest("base/virtlet-log-ds.yaml"), "ServiceAccount")
    assert virtlet["automountServiceAccountToken"] is False  # it never calls the API


def test_rbac_has_no_wildcards() -> None:
    for obj in everything_rendered():
        for rule in obj.get("rules", []):
            for key in ("verbs", "resources", "apiGroups"):
                assert "*" not in rule[key], f"{obj['metadata']['name']}: {key}"
            assert "nonResourceURLs" not in rule
        assert "aggregationRule" not in obj


def test_exec_and_nodes_proxy_are_granted_only_with_their_source(tmp_path: Path) -> None:
    def roles(deploy: Path = DEPLOY) -> set[str]:
        return {role for _, role, _ in plan(deploy)}

    shipped = roles()
    assert "stats-log-collector-memstat-kubelet" in shipped
    assert "stats-log-collector-memstat-exec" not in shipped
    exec_ = roles(
        copy_deploy(tmp_path / "d", {("base/deployment.yaml", "memstat", "MEMSTAT_SOURCE"): "exec"})
    )
    assert "stats-log-collector-memstat-exec" in exec_
    assert "stats-log-collector-memstat-kubelet" not in exec_
    assert not any("verbosity" in role for role in shipped)


def test_all_files_are_covered() -> None:
    """Every YAML file under deploy/ is a manifest the tests above read, a kustomization, or an Operator
    object (test_monitoring.py, test_prometheus_rules.py)."""
    found = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml"}
    monitoring = {
        f"components/monitoring/{n}.yaml" for n in ("servicemonitor", "podmonitor", "prometheusrule")
    }
    assert found == {*MANIFEST_FILES, *monitoring, "overlays/openshift/scc.yaml"}
