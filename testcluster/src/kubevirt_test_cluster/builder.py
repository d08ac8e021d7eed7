"""Putting a KubeVirt cluster's state in place: nodes, VMIs, pods, logs, memory, processes.

These are the loop-thread implementations behind :class:`KubeVirtCluster`'s population methods
(which hop onto the server thread once per call) and behind ``populate`` (which builds a whole
cluster in a single hop, so that a thousand VMIs take a fraction of a second, not thousands of
thread round-trips). They write through the same store as API requests do, so an object added
here is indistinguishable from one created with ``kubectl``.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import objects
from .api import KubeApi
from .container_exec import Process, ProcessEntry, launcher_processes
from .logs import Stamp, iter_entries
from .objects import LAUNCHER_SHAPE_VERSION, launcher_containers, new_uid, now_rfc3339, random_suffix
from .resources import HYPERCONVERGED, KUBEVIRT, NAMESPACE, NODE, POD, VMI
from .stats import ContainerMemory
from .store import Body

LAUNCHER_CONTAINERS = ("compute", "guest-console-log")
# template.go renders these when the VMI has a containerDisk (ours do) and ImageVolume is off; they
# copy a binary and pre-pull the disk image, then exit 0 (see objects._init_container_spec).
LAUNCHER_INIT_CONTAINERS = ("container-disk-binary", "volumecontainerdisk-init")


@dataclass(frozen=True)
class VmiRef:
    namespace: str
    name: str
    uid: str
    node: str


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str
    node: str
    containers: tuple[str, ...]  # what keeps running: regular containers and native sidecars
    init_containers: tuple[str, ...] = ()  # init containers that ran to completion
    kubevirt_version: str = LAUNCHER_SHAPE_VERSION


class Builder:
    """Population operations; call only on the server's event loop thread."""

    def __init__(self, api: KubeApi, rng: random.Random) -> None:
        self.api = api
        self.store = api.store
        self.rng = rng
        self._node_index: dict[str, int] = {}
        self._pod_ips: dict[str, int] = {}
        self._vmi_memory: dict[tuple[str, str], objects.VmiMemory] = {}

    # ---- cluster-scoped ---------------------------------------------------------------------

    def add_namespace(self, name: str) -> Body:
        found = self.store.get(NAMESPACE, None, name)
        if found is not None:
            return found
        body = objects.namespace(name)
        body["metadata"].update(uid=new_uid(self.rng), creationTimestamp=now_rfc3339())
        return self.store.put(NAMESPACE, body)

    def add_node(self, name: str) -> Body:
        found = self.store.get(NODE, None, name)
        if found is not None:
            return found
        index = self._node_index.setdefault(name, len(self._node_index))
        port = self.api.kubelets.start(name) if self.api.kubelets is not None else 10250
        body = objects.node(name, index, port)
        body["metadata"].update(uid=new_uid(self.rng), creationTimestamp=now_rfc3339())
        return self.store.put(NODE, body)

    def node_ip(self, node: str) -> str:
        self.add_node(node)
        addresses = self.store.require(NODE, None, node)["status"]["addresses"]
        return str(next(a["address"] for a in addresses if a["type"] == "InternalIP"))

    def _pod_ip(self, node: str) -> str:
        index = self._node_index.get(node, 0)
        serial = self._pod_ips.get(node, 0) + 1
        self._pod_ips[node] = serial
        return f"10.{244 + index // 256}.{index % 256}.{serial % 250 + 2}"

    # ---- KubeVirt objects ---------------------------------------------------------------------

    def add_vmi(
        self,
        namespace: str,
        name: str,
        node: str,
        phase: str = "Running",
        uid: str | None = None,
        migration_state: dict[str, Any] | None = None,
        memory: objects.VmiMemory = objects.DEFAULT_MEMORY,
    ) -> VmiRef:
        """A VMI; ``memory``: its memory fields, and what its launcher pods are rendered with."""
        self.add_namespace(namespace)
        self.add_node(node)
        uid = uid or new_uid(self.rng)
        self._vmi_memory[(namespace, name)] = memory
        body = objects.vmi(namespace, name, node, phase, uid, migration_state, memory)
        body["metadata"].update(creationTimestamp=now_rfc3339(), generation=1)
        self.store.put(VMI, body)
        return VmiRef(namespace, name, uid, node)

    def add_launcher_pod(
        self,
        vmi: VmiRef,
        node: str | None = None,
        containers: Sequence[str] | None = None,
        name: str | None = None,
        init_containers: Sequence[str] = LAUNCHER_INIT_CONTAINERS,
        kubevirt_version: str = LAUNCHER_SHAPE_VERSION,
    ) -> PodRef:
        """A launcher pod shaped as ``kubevirt_version`` renders it (see ``objects.launcher_pod``);
        ``containers`` defaults to what that version runs (no guest-console-log before v1.1.0)."""
        node = node or vmi.node
        containers = tuple(launcher_containers(kubevirt_version) if containers is None else containers)
        name = name or f"virt-launcher-{vmi.name}-{random_suffix(self.rng)}"
        uid = new_uid(self.rng)
        vmi_body = self.store.require(VMI, vmi.namespace, vmi.name)
        pod_ip = self._pod_ip(node)
        body = objects.launcher_pod(
            vmi_body,
            name,
            uid,
            node,
            containers,
            self.node_ip(node),
            pod_ip,
            self.rng,
            init_containers,
            kubevirt_version,
            self._vmi_memory.get((vmi.namespace, vmi.name), objects.DEFAULT_MEMORY),
        )
        body["metadata"]["creationTimestamp"] = now_rfc3339()
        self.store.put(POD, body)
        for container in init_containers:  # they have exited: their only run is closed
            self.api.pod_logs.runs(vmi.namespace, name, container)[-1].close()
        self._attach_pod(vmi_body, uid, node, pod_ip)
        if "compute" in containers:
            self.api.processes[(vmi.namespace, name)] = launcher_processes(vmi.name, namespace=vmi.namespace)
        return PodRef(vmi.namespace, name, uid, node, containers, tuple(init_containers), kubevirt_version)

    def _attach_pod(self, vmi_body: Body, pod_uid: str, node: str, pod_ip: str) -> None:
        status = copy.deepcopy(vmi_body.get("status", {}))
        status.setdefault("activePods", {})[pod_uid] = node
        if not status.get("interfaces"):
            status["interfaces"] = [
                {
                    "name": "default",
                    "ipAddress": pod_ip,
                    "ipAddresses": [pod_ip],
                    "infoSource": "domain, guest-agent",
                    "interfaceName": "eth0",
                }
            ]
        self.store.put(VMI, {**vmi_body, "status": status})

    def add_handler_pod(self, node: str, namespace: str = "kubevirt") -> PodRef:
        self.add_namespace(namespace)
        name = f"virt-handler-{random_suffix(self.rng)}"
        uid = new_uid(self.rng)
        body = objects.handler_pod(name, uid, namespace, node, self.node_ip(node), self.rng)
        body["metadata"]["creationTimestamp"] = now_rfc3339()
        self.store.put(POD, body)
        return PodRef(namespace, name, uid, node, ("virt-handler",))

    def add_kubevirt_cr(self, namespace: str = "kubevirt") -> Body:
        self.add_namespace(namespace)
        return self.store.create(KUBEVIRT, namespace, objects.kubevirt_cr(namespace))

    def add_hco_cr(self, namespace: str = "kubevirt-hyperconverged") -> Body:
        self.add_namespace(namespace)
        return self.store.create(HYPERCONVERGED, namespace, objects.hco_cr(namespace))

    def start_migration(self, vmi: VmiRef, target_node: str) -> PodRef:
        """A live migration in flight: a second launcher pod on the target node, ``migrationState`` set."""
        source_pods = self.launcher_pods(vmi)
        target = self.add_launcher_pod(vmi, node=target_node)
        vmi_body = self.store.require(VMI, vmi.namespace, vmi.name)
        state = {
            "migrationUid": new_uid(self.rng),
            "sourceNode": vmi.node,
            "targetNode": target_node,
            "sourcePod": source_pods[0]["metadata"]["name"] if source_pods else "",
            "targetPod": target.name,
            "startTimestamp": now_rfc3339(),
            "mode": "PreCopy",
            "completed": False,
            "failed": False,
        }
        self.store.put(VMI, {**vmi_body, "status": {**vmi_body["status"], "migrationState": state}})
        return target

    def finish_migration(self, vmi: VmiRef) -> VmiRef:
        """The migration succeeded: the source pod is gone and the VMI runs on the target node."""
        body = self.store.require(VMI, vmi.namespace, vmi.name)
        state = dict(body["status"].get("migrationState") or {})
        if not state:
            raise KeyError(f"VMI {vmi.namespace}/{vmi.name} is not migrating")
        target = state["targetNode"]
        self.delete_pod(vmi.namespace, state["sourcePod"])
        state.update(completed=True, endTimestamp=now_rfc3339())
        body = self.store.require(VMI, vmi.namespace, vmi.name)
        labels = {**body["metadata"].get("labels", {}), "kubevirt.io/nodeName": target}
        active = {uid: node for uid, node in body["status"].get("activePods", {}).items() if node == target}
        status = {**body["status"], "nodeName": target, "migrationState": state, "activePods": active}
        self.store.put(VMI, {**body, "metadata": {**body["metadata"], "labels": labels}, "status": status})
        return VmiRef(vmi.namespace, vmi.name, vmi.uid, target)

    def launcher_pods(self, vmi: VmiRef) -> list[Body]:
        return [
            pod
            for pod in self.store.list(POD, vmi.namespace)
            if pod["metadata"].get("labels", {}).get("kubevirt.io/created-by") == vmi.uid
        ]

    # ---- pods ---------------------------------------------------------------------------------

    def require_pod(self, namespace: str, name: str) -> Body:
        pod = self.store.get(POD, namespace, name)
        if pod is None:
            raise KeyError(f"pod {namespace}/{name} not found")
        return pod

    def require_container(self, namespace: str, pod: str, container: str) -> Body:
        body = self.require_pod(namespace, pod)
        if container not in objects.container_names(body):
            raise KeyError(f"pod {namespace}/{pod} has no container {container!r}")
        return body

    def delete_pod(self, namespace: str, name: str, grace_period_seconds: int | None = 0) -> Body:
        """``DELETE`` the pod with DeleteOptions.gracePeriodSeconds (0: removed now; None: the pod's
        terminationGracePeriodSeconds); a graceful deletion marks it and removes it when the grace
        ends (``Store._delete_pod``). Returns the pod as the API answers."""
        self.require_pod(namespace, name)
        return self.store.delete(POD, namespace, name, grace_period_seconds=grace_period_seconds)

    def finish_deletion(self, namespace: str, name: str) -> None:
        """End a pod's grace period now: it is removed (DELETED), and its logs with it."""
        self.require_pod(namespace, name)
        self.store.finish_deletion(POD, namespace, name)

    def set_pod_initialising(self, namespace: str, name: str) -> None:
        """The pod is stuck initialising (kubevirt/kubevirt#15355, #15586): phase Pending, its native
        sidecars running but not ready, its other init containers and its containers waiting."""
        body = self.require_pod(namespace, name)
        sidecars = {
            c["name"] for c in body["spec"].get("initContainers") or () if c.get("restartPolicy") == "Always"
        }
        status = copy.deepcopy(body.get("status", {}))
        waiting = {"waiting": {"reason": "PodInitializing"}}
        for entry in status.get("initContainerStatuses") or ():
            running = entry["name"] in sidecars
            entry.update(ready=False, started=running, state=entry["state"] if running else waiting)
        for entry in status.get("containerStatuses") or ():
            entry.update(ready=False, started=False, state=waiting, containerID="")
        for condition in status.get("conditions") or ():
            if condition["type"] in ("Initialized", "Ready", "ContainersReady"):
                condition["status"] = "False"
        status["phase"] = "Pending"
        self.store.put(POD, {**body, "status": status})

    def set_pod_phase(self, namespace: str, name: str, phase: str) -> None:
        body = self.require_pod(namespace, name)
        self.store.put(POD, {**body, "status": {**body.get("status", {}), "phase": phase}})

    def restart_container(self, namespace: str, pod: str, container: str) -> int:
        """The container died and was restarted: its log becomes ``previous``; returns the restart count.

        A native sidecar (or any init container) keeps its status in ``initContainerStatuses``, with its
        own ``restartCount`` and ``lastState``, as kubelet reports it (KEP-753).
        """
        body = self.require_container(namespace, pod, container)
        self.api.pod_logs.restart(namespace, pod, container)
        in_init = container in [spec.get("name") for spec in body["spec"].get("initContainers") or ()]
        field = "initContainerStatuses" if in_init else "containerStatuses"
        statuses = copy.deepcopy(body.get("status", {}).get(field, []))
        count = 0
        for status in statuses:
            if status["name"] == container:
                count = status["restartCount"] = status.get("restartCount", 0) + 1
                state = status.get("state", {})
                started = (state.get("running") or state.get("terminated") or {}).get(
                    "startedAt", now_rfc3339()
                )
                status["lastState"] = {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "Error",
                        "startedAt": started,
                        "finishedAt": now_rfc3339(),
                        "containerID": status.get("containerID", ""),
                    }
                }
                status["state"] = {"running": {"startedAt": now_rfc3339()}}
                status["containerID"] = objects.container_id(self.rng)
        self.store.put(POD, {**body, "status": {**body["status"], field: statuses}})
        return count

    def append_lines(
        self, namespace: str, pod: str, container: str, entries: Iterable[tuple[Stamp | None, str | bytes]]
    ) -> int:
        """Append ``(time, text)`` entries to the current run; returns the number of lines added."""
        self.require_container(namespace, pod, container)
        run = self.api.pod_logs.runs(namespace, pod, container)[-1]
        before = len(run)
        run.extend(iter_entries(entries))
        return len(run) - before

    def set_memory(self, namespace: str, pod: str, container: str, memory: ContainerMemory) -> None:
        self.require_container(namespace, pod, container)
        self.api.memory[(namespace, pod, container)] = memory

    def set_processes(self, namespace: str, pod: str, table: Mapping[int, ProcessEntry]) -> None:
        self.require_pod(namespace, pod)
        self.api.processes[(namespace, pod)] = {pid: Process(pid, *entry) for pid, entry in table.items()}
