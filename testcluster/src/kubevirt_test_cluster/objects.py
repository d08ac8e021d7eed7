"""Realistic object bodies: Nodes, VMIs, virt-launcher and virt-handler pods, the KubeVirt and HCO CRs.

A collector finds its targets by labels, annotations and status fields that KubeVirt sets
(``kubevirt.io=virt-launcher``, ``kubevirt.io/created-by``, ``vm.kubevirt.io/name``,
``kubectl.kubernetes.io/default-container``, ``spec.nodeName``, ``containerStatuses[].restartCount``).
Building the objects here, field for field as KubeVirt creates them, keeps tests honest about
what a real cluster would answer, and keeps that knowledge out of each test.
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

LAUNCHER_IMAGE = "quay.io/kubevirt/virt-launcher:v1.4.0"
HANDLER_IMAGE = "quay.io/kubevirt/virt-handler:v1.4.0"
KUBEVIRT_VERSION = "v1.4.0"
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's generateName alphabet

# The launcher pod's shape by KubeVirt version (pkg/virt-controller/services/template.go, the pod its
# ``renderLaunchManifest`` builds, and serialconsolelog.go ``generateSerialConsoleLogContainer``):
# guest-console-log appeared in v1.1.0 as a regular container; since v1.6.0 (commit da149f3faf,
# kubevirt/kubevirt#13422) it is a native sidecar, first in ``initContainers`` with restartPolicy Always.
LAUNCHER_SHAPE_VERSION = "1.6.0"  # the default: the modern shape
CONSOLE_LOG_SINCE = (1, 1, 0)
NATIVE_SIDECAR_SINCE = (1, 6, 0)
NATIVE_SIDECARS = ("guest-console-log",)


@dataclasses.dataclass(frozen=True)
class VmiMemory:
    """A VMI's memory fields and what virt-controller renders from them for its launcher pod.

    Quantities as the API shows them (any string: tests give hostile ones too); None leaves a field
    out. The VMI: ``spec.domain.memory.guest`` and ``spec.domain.resources.requests/limits.memory``
    (staging/src/kubevirt.io/api/core/v1/schema.go ``Memory``, ``ResourceRequirements``). The compute
    container: kubevirt pkg/virt-controller/services/renderresources.go requests the VMI's memory
    request plus the estimated overhead (``GetMemoryOverhead``, ``WithMemoryOverhead``) and, when the
    VMI sets a memory limit, limits it to that limit plus the same overhead; tests pass the rendered
    figures. The defaults are a 1 GiB VM without limit (1294Mi: 1 GiB plus 270 MiB of overhead).
    """

    guest: str | None = "1Gi"
    request: str | None = "1Gi"
    limit: str | None = None
    compute_request: str | None = "1294Mi"
    compute_limit: str | None = None


DEFAULT_MEMORY = VmiMemory()
# KubeVirt's init containers (container-disk-binary, the container disks' init) have small fixed
# resources (pkg/container-disk/container-disk.go ``GenerateInitContainers``); here, as rendered for a
# VMI with limits, so a pod whose containers all have limits has one.
INIT_RESOURCES = {"requests": {"cpu": "10m", "memory": "1M"}, "limits": {"cpu": "100m", "memory": "40M"}}


def _memory_resources(request: str | None, limit: str | None) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if request is not None:
        resources["requests"] = {"memory": request}
    if limit is not None:
        resources["limits"] = {"memory": limit}
    return resources


def now_rfc3339() -> str:
    """Second-precision UTC time, as ``metadata.creationTimestamp`` is written."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def random_suffix(rng: random.Random, length: int = 5) -> str:
    return "".join(rng.choice(_SUFFIX_ALPHABET) for _ in range(length))


def new_uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def container_id(rng: random.Random) -> str:
    return "containerd://" + "".join(rng.choice("0123456789abcdef") for _ in range(64))


def namespace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def node(name: str, index: int, kubelet_port: int = 10250, address: str = "127.0.0.1") -> dict[str, Any]:
    """A Node as kubelet registers it; its kubelet listens on ``address``:``kubelet_port`` (every node of
    the test cluster is on 127.0.0.1, each kubelet on a port of its own)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubevirt.io/schedulable": "true",
                "node-role.kubernetes.io/worker": "",
            },
            "annotations": {"kubevirt.io/heartbeat": now_rfc3339()},
        },
        "spec": {"podCIDR": f"10.244.{index % 256}.0/24"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
            "capacity": {"cpu": "16", "memory": "65842148Ki", "pods": "110", "devices.kubevirt.io/kvm": "1k"},
            "allocatable": {
                "cpu": "16",
                "memory": "65739748Ki",
                "pods": "110",
                "devices.kubevirt.io/kvm": "1k",
            },
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": now_rfc3339(),
                    "lastTransitionTime": now_rfc3339(),
                }
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "nodeInfo": {
                "architecture": "amd64",
                "containerRuntimeVersion": "containerd://1.7.24",
                "kernelVersion": "6.1.0-28-cloud-amd64",
                "kubeProxyVersion": "v1.32.0",
                "kubeletVersion": "v1.32.0",
                "operatingSystem": "linux",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
            },
        },
    }


def vmi(
    namespace_name: str,
    name: str,
    node_name: str,
    phase: str,
    uid: str,
    migration_state: dict[str, Any] | None = None,
    memory: VmiMemory = DEFAULT_MEMORY,
) -> dict[str, Any]:
    """A ``kubevirt.io/v1`` VirtualMachineInstance as virt-controller and virt-handler leave it."""
    running = phase == "Running"
    status: dict[str, Any] = {
        "phase": phase,
        "nodeName": node_name,
        "activePods": {},
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if running else "False",
                "lastProbeTime": None,
                "lastTransitionTime": now_rfc3339(),
            },
            {"type": "LiveMigratable", "status": "True", "lastProbeTime": None, "lastTransitionTime": None},
        ],
        "guestOSInfo": {},
        "interfaces": [],
        "launcherContainerImageVersion": LAUNCHER_IMAGE,
        "migrationMethod": "BlockMigration",
        "migrationTransport": "Unix",
        "qosClass": "Burstable",
    }
    if migration_state is not None:
        status["migrationState"] = migration_state
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": name,
            "namespace": namespace_name,
            "uid": uid,
            "labels": {
                "kubevirt.io/nodeName": node_name,
                "kubevirt.io/vm": name,
                "vm.kubevirt.io/name": name,
            },
            "annotations": {
                "kubevirt.io/latest-observed-api-version": "v1",
                "kubevirt.io/storage-observed-api-version": "v1",
            },
        },
        "spec": {
            "architecture": "amd64",
            "domain": {
                "cpu": {"cores": 1, "sockets": 1, "threads": 1, "model": "host-model"},
                "devices": {
                    "disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}}],
                    "interfaces": [{"name": "default", "masquerade": {}}],
                },
                "machine": {"type": "q35"},
                **({"memory": {"guest": memory.guest}} if memory.guest is not None else {}),
                "resources": _memory_resources(memory.request, memory.limit),
            },
            "networks": [{"name": "default", "pod": {}}],
            "volumes": [
                {"name": "containerdisk", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}
            ],
        },
        "status": status,
    }


def _container_spec(name: str, vmi_uid: str, memory: VmiMemory = DEFAULT_MEMORY) -> dict[str, Any]:
    if name == "compute":
        rendered = _memory_resources(memory.compute_request, memory.compute_limit)
        return {
            "name": "compute",
            "image": LAUNCHER_IMAGE,
            "command": [
                "/usr/bin/virt-launcher-monitor",
                "--qemu-timeout",
                "270s",
                "--name",
                "vm",
                "--uid",
                vmi_uid,
                "--namespace",
                "ns",
                "--kubevirt-share-dir",
                "/var/run/kubevirt",
            ],
            "resources": {
                "limits": {"devices.kubevirt.io/kvm": "1", **rendered.get("limits", {})},
                "requests": {"cpu": "100m", **rendered.get("requests", {})},
            },
            "securityContext": {
                "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                "runAsUser": 107,
            },
        }
    if name == "guest-console-log":
        return {
            "name": "guest-console-log",
            "image": LAUNCHER_IMAGE,
            "command": ["/usr/bin/virt-tail"],
            "args": ["--logfile", f"/var/run/kubevirt-private/{vmi_uid}/virt-serial0-log"],
            "resources": {
                "limits": {"cpu": "15m", "memory": "60M"},
                "requests": {"cpu": "5m", "memory": "35M"},
            },
        }
    return {"name": name, "image": LAUNCHER_IMAGE}


def container_status(
    name: str, image: str, started_at: str, cid: str, restart_count: int = 0
) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imageID": f"{image.split(':')[0]}@sha256:{'0' * 64}",
        "containerID": cid,
        "ready": True,
        "started": True,
        "restartCount": restart_count,
        "state": {"running": {"startedAt": started_at}},
        "lastState": {},
    }


def completed_status(name: str, image: str, started_at: str, cid: str) -> dict[str, Any]:
    """An init container that ran to completion: kubelet reports it terminated, Completed, ready."""
    return {
        **container_status(name, image, started_at, cid),
        "started": False,
        "state": {
            "terminated": {
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": started_at,
                "finishedAt": started_at,
                "containerID": cid,
            }
        },
    }


def parse_version(version: str) -> tuple[int, ...]:
    """``"v1.6.0"``, ``"1.5"``, ``"0.59"`` -> ``(1, 6, 0)``, ``(1, 5)``, ``(0, 59)``."""
    return tuple(int(part) for part in version.lstrip("v").split("-")[0].split("."))


def launcher_containers(version: str) -> tuple[str, ...]:
    """What a launcher pod of that KubeVirt version runs beside ``compute`` by default."""
    return ("compute", "guest-console-log") if parse_version(version) >= CONSOLE_LOG_SINCE else ("compute",)


def _init_container_spec(name: str, image: str, memory: VmiMemory = DEFAULT_MEMORY) -> dict[str, Any]:
    """template.go ``newInitContainerRenderer`` (``container-disk-binary``: copies the binary) and
    pkg/container-disk/container-disk.go ``GenerateInitContainers`` (``volume<name>-init``: pre-pulls
    the disk image, ``--no-op``)."""
    resources = {"resources": INIT_RESOURCES} if memory.compute_limit is not None else {}
    if name == "container-disk-binary":
        command = ["/usr/bin/cp", "/usr/bin/container-disk", "/init/usr/bin/container-disk"]
        return {"name": name, "image": image, "command": command, **resources}
    return {
        "name": name,
        "image": "quay.io/containerdisks/fedora:41",
        "command": ["/usr/bin/container-disk"],
        "args": ["--no-op"],
        **resources,
    }


def _pod_status(
    containers: Sequence[dict[str, Any]],
    host_ip: str,
    pod_ip: str,
    rng: random.Random,
    init_containers: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    started = now_rfc3339()
    status: dict[str, Any] = {
        "phase": "Running",
        "hostIP": host_ip,
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": started,
        "qosClass": "Burstable",
        "conditions": [
            {"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": started}
            for kind in (
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled",
            )
        ],
        "containerStatuses": [
            container_status(spec["name"], spec["image"], started, container_id(rng)) for spec in containers
        ],
    }
    if init_containers:
        # Native sidecars keep running (with their own restartCount); the others have completed.
        status["initContainerStatuses"] = [
            (container_status if spec.get("restartPolicy") == "Always" else completed_status)(
                spec["name"], spec["image"], started, container_id(rng)
            )
            for spec in init_containers
        ]
    return status


def launcher_pod(
    vmi_obj: dict[str, Any],
    name: str,
    uid: str,
    node_name: str,
    containers: Sequence[str],
    host_ip: str,
    pod_ip: str,
    rng: random.Random,
    init_containers: Sequence[str] = (),
    kubevirt_version: str = LAUNCHER_SHAPE_VERSION,
    memory: VmiMemory = DEFAULT_MEMORY,
) -> dict[str, Any]:
    """The virt-launcher pod of a VMI, labelled and owned as virt-controller creates it.

    ``containers`` are what runs; ``kubevirt_version`` decides where: since v1.6.0 the native sidecars
    (guest-console-log) come first in ``initContainers``, with restartPolicy Always, then the completed
    ``init_containers``. Labels: template.go ``podLabels`` (``vm.kubevirt.io/name`` is
    ``dns.SanitizeHostname``: ``spec.hostname``, else the name cut at its first dot).
    """
    meta = vmi_obj["metadata"]
    native = parse_version(kubevirt_version) >= NATIVE_SIDECAR_SINCE
    sidecars = [c for c in containers if native and c in NATIVE_SIDECARS]
    specs = [_container_spec(c, meta["uid"], memory) for c in containers if c not in sidecars]
    init_specs = [{**_container_spec(c, meta["uid"], memory), "restartPolicy": "Always"} for c in sidecars]
    init_specs += [_init_container_spec(c, LAUNCHER_IMAGE, memory) for c in init_containers]
    hostname = (vmi_obj.get("spec") or {}).get("hostname") or meta["name"].split(".")[0][:63]
    spec: dict[str, Any] = {
        "nodeName": node_name,
        "containers": specs,
        "hostname": hostname,
        "restartPolicy": "Never",
        "schedulerName": "default-scheduler",
        "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 210,
        "automountServiceAccountToken": False,
        "nodeSelector": {"kubevirt.io/schedulable": "true"},
    }
    if init_specs:
        spec["initContainers"] = init_specs
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": f"virt-launcher-{meta['name']}-",
            "namespace": meta["namespace"],
            "uid": uid,
            "labels": {
                "kubevirt.io": "virt-launcher",
                "kubevirt.io/created-by": meta["uid"],
                "kubevirt.io/nodeName": node_name,
                "vm.kubevirt.io/name": hostname,
                "vmi.kubevirt.io/id": meta["name"],
            },
            "annotations": {
                "kubectl.kubernetes.io/default-container": "compute",
                "kubevirt.io/domain": meta["name"],
                "kubevirt.io/migrationTransportUnix": "true",
                "post.hook.backup.velero.io/container": "compute",
                "pre.hook.backup.velero.io/container": "compute",
            },
            "ownerReferences": [
                {
                    "apiVersion": "kubevirt.io/v1",
                    "kind": "VirtualMachineInstance",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
        "status": _pod_status(specs, host_ip, pod_ip, rng, init_specs),
    }


def handler_pod(
    name: str, uid: str, namespace_name: str, node_name: str, host_ip: str, rng: random.Random
) -> dict[str, Any]:
    """One virt-handler DaemonSet pod (host network, so its IP is the node's)."""
    specs = [
        {
            "name": "virt-handler",
            "image": HANDLER_IMAGE,
            "command": [
                "virt-handler",
                "--port",
                "8443",
                "--hostname-override",
                "$(NODE_NAME)",
                "--pod-ip-address",
                "$(MY_POD_IP)",
                "--max-metric-requests",
                "3",
                "--console-server-port",
                "8186",
                "--graceful-shutdown-seconds",
                "315",
                "-v",
                "2",
            ],
            "resources": {"requests": {"cpu": "10m", "memory": "357Mi"}},
        }
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": "virt-handler-",
            "namespace": namespace_name,
            "uid": uid,
            "labels": {
                "app.kubernetes.io/component": "kubevirt",
                "app.kubernetes.io/managed-by": "virt-operator",
                "app.kubernetes.io/version": KUBEVIRT_VERSION,
                "controller-revision-hash": "7c9d8f6b5d",
                "kubevirt.io": "virt-handler",
                "pod-template-generation": "1",
                "prometheus.kubevirt.io": "true",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "DaemonSet",
                    "name": "virt-handler",
                    "uid": new_uid(rng),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "nodeName": node_name,
            "containers": specs,
            "hostNetwork": False,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "serviceAccountName": "kubevirt-handler",
            "priorityClassName": "kubevirt-cluster-critical",
        },
        "status": _pod_status(specs, host_ip, f"10.244.{rng.randrange(256)}.{rng.randrange(2, 254)}", rng),
    }


def kubevirt_cr(namespace_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": namespace_name, "generation": 1},
        "spec": {
            "certificateRotateStrategy": {},
            "configuration": {"developerConfiguration": {"featureGates": []}},
            "customizeComponents": {},
            "imagePullPolicy": "IfNotPresent",
            "workloadUpdateStrategy": {"workloadUpdateMethods": ["LiveMigrate"]},
        },
        "status": {
            "phase": "Deployed",
            "observedKubeVirtVersion": KUBEVIRT_VERSION,
            "targetKubeVirtVersion": KUBEVIRT_VERSION,
            "operatorVersion": KUBEVIRT_VERSION,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "AllResourcesCreated",
                    "message": "All components are ready.",
                }
            ],
        },
    }


def hco_cr(namespace_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "hco.kubevirt.io/v1beta1",
        "kind": "HyperConverged",
        "metadata": {"name": "kubevirt-hyperconverged", "namespace": namespace_name, "generation": 1},
        "spec": {
            "featureGates": {"downwardMetrics": False, "enableCommonBootImageImport": True},
            "infra": {},
            "workloads": {},
            "liveMigrationConfig": {"completionTimeoutPerGiB": 150, "parallelMigrationsPerCluster": 5},
            "uninstallStrategy": "BlockUninstallIfWorkloadsExist",
        },
        "status": {
            "conditions": [{"type": "Available", "status": "True", "reason": "ReconcileCompleted"}],
            "versions": [{"name": "operator", "version": "1.13.0"}],
        },
    }


def container_names(pod: dict[str, Any]) -> list[str]:
    """Every container of a pod, as the API server visits them for logs and exec: init containers
    (native sidecars among them), containers, ephemeral containers (Kubernetes
    pkg/api/pod/util.go ``VisitContainers``, used by registry/core/pod/strategy.go
    ``podHasContainerWithName``)."""
    spec = pod.get("spec", {})
    kinds = ("initContainers", "containers", "ephemeralContainers")
    return [entry["name"] for kind in kinds for entry in spec.get(kind) or ()]
