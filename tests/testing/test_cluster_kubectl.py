"""The real kubectl (1.32) works against the test cluster: get, logs, exec, apply, delete.

kubectl is the strictest client we have: it walks discovery, asks for server-side tables, checks
OpenAPI before ``apply``, computes strategic merge patches and waits for deletions with a watch.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kubevirt_test_cluster import KubeVirtCluster, Population

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def kubectl_command(kubevirt_cluster: KubeVirtCluster, tmp_path: Path) -> list[str]:
    kubeconfig = kubevirt_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    assert KUBECTL is not None
    return [KUBECTL, f"--kubeconfig={kubeconfig}", f"--cache-dir={tmp_path / 'cache'}"]


@pytest.fixture
def kubectl(kubectl_command: list[str]) -> Kubectl:
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*kubectl_command, *args], capture_output=True, text=True, timeout=30)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    return run


@pytest.fixture
def population(kubevirt_cluster: KubeVirtCluster) -> Population:
    return kubevirt_cluster.populate(["a", "b"], nodes=2, vms_per_namespace=2, log_lines=3)


def rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines()]


def test_get_pods_and_vmis(kubectl: Kubectl, population: Population) -> None:
    table = rows(kubectl("get", "pods", "-n", "a").stdout)
    assert table[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    launchers_a = sorted(pod.name for pod in population.launcher_pods if pod.namespace == "a")
    assert [row[0] for row in table[1:]] == launchers_a
    assert {tuple(row[1:4]) for row in table[1:]} == {("2/2", "Running", "0")}
    everywhere = rows(kubectl("get", "pods", "-A", "-l", "kubevirt.io=virt-launcher").stdout)
    assert everywhere[0][:2] == ["NAMESPACE", "NAME"]
    assert sorted((row[0], row[1]) for row in everywhere[1:]) == sorted(
        (pod.namespace, pod.name) for pod in population.launcher_pods
    )
    handlers = kubectl(
        "get", "pods", "-A", "-l", "kubevirt.io in (virt-handler)", "-o", "name"
    ).stdout.split()
    assert sorted(handlers) == sorted(f"pod/{pod.name}" for pod in population.handler_pods.values())
    vmis = rows(kubectl("get", "vmi", "-n", "a").stdout)
    assert vmis[0] == ["NAME", "AGE", "PHASE", "IP", "NODENAME", "READY"]
    assert [(row[0], row[2], row[4], row[5]) for row in vmis[1:]] == [
        ("vm-000", "Running", "node-01", "True"),
        ("vm-001", "Running", "node-02", "True"),
    ]
    node = kubectl("get", "vmi", "-n", "b", "vm-001", "-o", "jsonpath={.status.nodeName}").stdout
    assert node == "node-02"
    missing = kubectl("get", "pod", "-n", "a", "ghost", check=False)
    assert missing.returncode == 1 and 'pods "ghost" not found' in missing.stderr


def test_logs(kubectl: Kubectl, kubevirt_cluster: KubeVirtCluster, population: Population) -> None:
    pod = population.launcher_pods[0]
    kubevirt_cluster.clear_requests()
    default = kubectl("logs", "-n", pod.namespace, pod.name).stdout.splitlines()
    assert len(default) == 3 and all('"component":"virt-launcher"' in line for line in default)
    log_requests = [r for r in kubevirt_cluster.requests() if r.path.endswith("/log")]
    assert [r.param("container") for r in log_requests] == ["compute"]  # kubectl read the annotation
    console = kubectl("logs", "-n", pod.namespace, pod.name, "-c", "guest-console-log").stdout
    assert "Journal Service" in console
    kubevirt_cluster.append_log(pod.namespace, pod.name, "compute", "late line", time=2_000_000_000 * 10**9)
    stamped = kubectl(
        "logs", "-n", pod.namespace, pod.name, "--timestamps", "--since-time=2033-05-18T03:33:20.5Z"
    ).stdout
    assert stamped == "2033-05-18T03:33:20.000000000Z late line\n"
    assert kubectl("logs", "-n", pod.namespace, pod.name, "--tail=1").stdout == "late line\n"
    no_previous = kubectl("logs", "-n", pod.namespace, pod.name, "--previous", check=False)
    assert no_previous.returncode == 1
    assert f'previous terminated container "compute" in pod "{pod.name}" not found' in no_previous.stderr
    kubevirt_cluster.restart_container(pod.namespace, pod.name, "compute")
    previous = kubectl("logs", "-n", pod.namespace, pod.name, "--previous").stdout
    assert previous.endswith("late line\n") and previous.count("\n") == 4


def test_logs_follow_ends_when_the_pod_is_deleted(
    kubectl_command: list[str], kubevirt_cluster: KubeVirtCluster, population: Population
) -> None:
    handler = population.handler_pods["node-01"]
    follower = subprocess.Popen(
        [*kubectl_command, "logs", "-f", "--tail=0", "-n", handler.namespace, handler.name],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        for _ in range(100):  # wait until kubectl's follow request is open
            if any(r.param("follow") == "true" for r in kubevirt_cluster.requests()):
                break
            time.sleep(0.05)
        kubevirt_cluster.append_log(handler.namespace, handler.name, "virt-handler", "fresh line")
        assert follower.stdout.readline() == "fresh line\n"
        kubevirt_cluster.delete_pod(handler.namespace, handler.name)
        assert follower.wait(timeout=10) == 0
    finally:
        follower.kill()
        follower.wait()


def test_exec(kubectl: Kubectl, population: Population) -> None:
    pod = population.launcher_pods[0]
    assert kubectl("exec", "-n", pod.namespace, pod.name, "--", "pidof", "virt-launcher").stdout == "12\n"
    failed = kubectl("exec", "-n", pod.namespace, pod.name, "--", "cat", "/proc/1234/status", check=False)
    assert failed.returncode == 1 and "No such file or directory" in failed.stderr


MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata: {name: collector}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: collector, namespace: collector}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: collector, namespace: collector}
rules: [{apiGroups: [""], resources: [pods, pods/log], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: collector, namespace: collector}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: collector}
subjects: [{kind: ServiceAccount, name: collector, namespace: collector}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: collector-read-vmis}
rules: [{apiGroups: [kubevirt.io], resources: [virtualmachineinstances], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: collector-read-vmis}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: collector-read-vmis}
subjects: [{kind: ServiceAccount, name: collector, namespace: collector}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: collector}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Gi}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: collector, namespace: collector}
data: {POLL_INTERVAL_SECS: "30"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: collector, namespace: collector}
spec:
  replicas: 1
  selector: {matchLabels: {app: collector}}
  template:
    metadata: {labels: {app: collector}}
    spec:
      serviceAccountName: collector
      containers:
      - name: collector
        image: example/collector:1
        ports: [{containerPort: 8099}]
        env: [{name: MODE, value: "memstat"}, {name: KEEP, value: "yes"}]
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: console-logger, namespace: collector}
spec:
  selector: {matchLabels: {app: console-logger}}
  template:
    metadata: {labels: {app: console-logger}}
    spec:
      containers: [{name: logger, image: example/logger:1}]
---
apiVersion: v1
kind: Service
metadata: {name: collector, namespace: collector}
spec:
  selector: {app: collector}
  ports: [{port: 8099, targetPort: 8099}]
"""


def test_apply_reapply_and_delete(
    kubectl: Kubectl, kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    manifest = tmp_path / "collector.yaml"
    manifest.write_text(MANIFEST)
    created = kubectl("apply", "-f", str(manifest)).stdout.splitlines()
    assert len(created) == 11 and all(line.endswith(" created") for line in created)
    assert "deployment.apps/collector created" in created
    unchanged = kubectl("apply", "-f", str(manifest)).stdout.splitlines()
    assert all(line.endswith(" unchanged") for line in unchanged)

    manifest.write_text(
        MANIFEST.replace('"30"', '"60"')
        .replace("collector:1", "collector:2")
        .replace('value: "memstat"', 'value: "all"')
    )
    configured = kubectl("apply", "-f", str(manifest)).stdout.splitlines()
    assert sorted(line for line in configured if line.endswith(" configured")) == [
        "configmap/collector configured",
        "deployment.apps/collector configured",
    ]
    config = kubevirt_cluster.get_object("v1", "ConfigMap", "collector", "collector")
    deployment = kubevirt_cluster.get_object("apps/v1", "Deployment", "collector", "collector")
    assert config is not None and deployment is not None
    assert config["data"] == {"POLL_INTERVAL_SECS": "60"}
    [container] = deployment["spec"]["template"]["spec"]["containers"]  # merged by name, not appended
    assert container["image"] == "example/collector:2"
    assert container["env"] == [{"name": "MODE", "value": "all"}, {"name": "KEEP", "value": "yes"}]
    assert deployment["metadata"]["generation"] == 2

    deleted = kubectl("delete", "-f", str(manifest)).stdout.splitlines()  # waits for the namespace to go
    assert len(deleted) == 11 and all(line.endswith(" deleted") for line in deleted)
    assert kubectl("get", "namespace", "collector", check=False).returncode == 1
    assert kubectl("get", "clusterroles", "-o", "name").stdout == ""
    assert kubevirt_cluster.get_object("apps/v1", "Deployment", "collector", "collector") is None
