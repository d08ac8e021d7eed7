"""The few API objects the components need, as small typed values parsed from the API's JSON.

Parsing is pure and tolerant: a field the API left out becomes None or empty rather than an error,
because a pod being scheduled or a VMI being created legitimately lacks a node or a status.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .quantity import parse_quantity

JSON = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Vmi:
    """A kubevirt.io/v1 VirtualMachineInstance: the running VM."""

    namespace: str
    name: str
    uid: str
    node: str | None
    phase: str
    labels: dict[str, str] = dataclasses.field(default_factory=dict, compare=False)
    # Every node the VMI runs or ran on lately: its node, a migration's source and target, the nodes of
    # its active pods (a virt-handler on each of them logs about it).
    nodes: tuple[str, ...] = dataclasses.field(default=(), compare=False)
    hostname: str = ""  # spec.hostname
    # The guest's RAM (None when it is not a quantity), as virt-launcher's domain converter chooses it
    # (KubeVirt pkg/virt-launcher/virtwrap/converter, ``GetVirtualMemory``): spec.domain.memory.guest
    # ("the amount of memory visible inside the guest OS", api/core/v1/schema.go ``Memory.Guest``),
    # else the memory limit when no memory request is set, else the memory request.
    guest_memory_bytes: int | None = dataclasses.field(default=None, compare=False)

    @classmethod
    def from_json(cls, obj: JSON) -> Vmi:
        meta, status = _object(obj.get("metadata")), _object(obj.get("status"))
        node = status.get("nodeName") or _object(meta.get("labels")).get("kubevirt.io/nodeName")
        migration = _object(status.get("migrationState"))
        candidates = [node, migration.get("sourceNode"), migration.get("targetNode")]
        candidates += list(_object(status.get("activePods")).values())
        spec = _object(obj.get("spec"))
        hostname = spec.get("hostname")
        domain = _object(spec.get("domain"))
        guest = parse_quantity(_object(domain.get("memory")).get("guest"))
        if guest is None:
            resources = _object(domain.get("resources"))
            requested = _object(resources.get("requests")).get("memory")
            limited = _object(resources.get("limits")).get("memory")
            guest = parse_quantity(limited if requested is None and limited is not None else requested)
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            node=node,
            phase=status.get("phase", "Unknown"),
            labels=dict(_object(meta.get("labels"))),
            nodes=tuple(dict.fromkeys(n for n in candidates if isinstance(n, str) and n)),
            hostname=hostname if isinstance(hostname, str) else "",
            guest_memory_bytes=guest,
        )

    @property
    def launcher_hostname(self) -> str:
        """What virt-controller writes in its launcher pods' ``vm.kubevirt.io/name`` label.

        KubeVirt pkg/util/net/dns/sanitize.go ``SanitizeHostname`` (v0.59 through v1.7): the VMI name cut
        at its first dot and to 63 characters, replaced by ``spec.hostname`` when set; template.go
        ``podLabels`` puts it in the label (``DeprecatedVirtualMachineNameLabel`` since v1.7).
        """
        return self.hostname or self.name.split(".")[0][:63]


# A container's place in its pod. Kubernetes runs init containers one after the other to completion
# before the others, except those with ``restartPolicy: Always`` (native sidecars, KEP-753, beta in
# 1.29): they keep running beside the regular containers and restart on their own.
REGULAR, SIDECAR, INIT = "container", "sidecar", "init"
# An init container's restartPolicy: unset, or Always (a native sidecar); Never and OnFailure come with
# per-container restart rules (KEP-5307, alpha in 1.34) and leave it a plain init container. Kubernetes
# pkg/apis/core/validation/validation.go ``validateInitContainerRestartPolicy`` rejects anything else.
_INIT_POLICIES = (None, "Always", "Never", "OnFailure")


@dataclasses.dataclass(frozen=True)
class ContainerState:
    name: str
    restart_count: int
    running: bool
    terminated: bool = False
    started: datetime | None = None  # when the current (or, terminated, the last) run started

    @classmethod
    def from_json(cls, obj: JSON) -> ContainerState:
        state = _object(obj.get("state"))
        current = _object(state.get("running") or state.get("terminated"))
        count = obj.get("restartCount", 0)
        return cls(
            name=obj.get("name") or "",
            restart_count=count if isinstance(count, int) and count >= 0 else 0,
            running="running" in state,
            terminated="terminated" in state,
            started=parse_time(current.get("startedAt")),
        )


@dataclasses.dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str
    node: str | None
    phase: str
    containers: tuple[str, ...]  # spec.containers
    container_states: tuple[ContainerState, ...] = ()
    labels: dict[str, str] = dataclasses.field(default_factory=dict, compare=False)
    created: datetime | None = None
    init_containers: tuple[str, ...] = ()  # spec.initContainers, native sidecars included, in order
    sidecars: frozenset[str] = frozenset()  # the init containers with restartPolicy: Always
    init_container_states: tuple[ContainerState, ...] = ()
    owners: tuple[tuple[str, str], ...] = ()  # (kind, uid) of metadata.ownerReferences
    # What does not fit the Pod API (a status for a container not in the spec, a status without a
    # name, an unknown restartPolicy...): one sentence each, for the caller to log.
    problems: tuple[str, ...] = dataclasses.field(default=(), compare=False)
    # The pod's memory request and limit as Kubernetes counts them (see :func:`pod_memory`); None when
    # no container declares one, or (limit) when a container has none, so the pod has no limit.
    memory_request_bytes: int | None = dataclasses.field(default=None, compare=False)
    memory_limit_bytes: int | None = dataclasses.field(default=None, compare=False)

    @classmethod
    def from_json(cls, obj: JSON) -> Pod:
        meta, spec, status = (
            _object(obj.get("metadata")),
            _object(obj.get("spec")),
            _object(obj.get("status")),
        )
        problems: list[str] = []
        containers = _names(spec, "containers", problems)
        init_specs = _entries(spec, "initContainers", problems)
        sidecars: set[str] = set()
        unknown: set[str] = set()
        for entry in init_specs:
            name, policy = entry.get("name") or "", entry.get("restartPolicy")
            if policy == "Always":
                sidecars.add(name)
            elif policy not in _INIT_POLICIES:
                unknown.add(name)
                problems.append(f"init container {name!r} has an unknown restartPolicy {policy!r}")
        listed = tuple(entry.get("name") or "" for entry in init_specs)
        if "" in containers or "" in listed:
            problems.append("a container without a name")
        states = _states(status, "containerStatuses", containers, problems)
        init_states = _states(status, "initContainerStatuses", listed, problems)
        init_containers = tuple(name for name in listed if name and name not in unknown)
        owners = tuple(
            (str(ref.get("kind", "")), str(ref.get("uid", "")))
            for ref in _entries(meta, "ownerReferences", problems)
        )
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            node=spec.get("nodeName"),
            phase=status.get("phase", "Unknown"),
            containers=tuple(name for name in containers if name),
            container_states=states,
            labels={k: v for k, v in _object(meta.get("labels")).items() if isinstance(v, str)},
            created=parse_time(meta.get("creationTimestamp")),
            init_containers=init_containers,
            sidecars=frozenset(name for name in sidecars if name),
            init_container_states=init_states,
            owners=owners,
            problems=tuple(problems),
            memory_request_bytes=pod_memory(spec, "requests"),
            memory_limit_bytes=pod_memory(spec, "limits"),
        )

    def kind_of(self, container: str) -> str | None:
        """REGULAR, SIDECAR or INIT; None for a name the pod's spec does not have."""
        if container in self.containers:
            return REGULAR
        if container in self.sidecars:
            return SIDECAR
        return INIT if container in self.init_containers else None

    def state(self, container: str) -> ContainerState | None:
        states = self.container_states if container in self.containers else self.init_container_states
        return next((c for c in states if c.name == container), None)

    def restart_count(self, container: str) -> int:
        state = self.state(container)
        return state.restart_count if state else 0


def _container_memory(entry: JSON, kind: str) -> int | None:
    """A container's ``resources.<kind>.memory`` in bytes; None when unset, zero or not a quantity.

    Zero counts as unset, as Kubernetes reads it (``Quantity.IsZero``): a limit of 0 is no limit.
    """
    value = parse_quantity(_object(_object(entry.get("resources")).get(kind)).get("memory"))
    return value or None


def pod_memory(spec: JSON, kind: str) -> int | None:
    """The pod's memory ``kind`` ("requests" or "limits"), as the scheduler and kubelet count it.

    k8s.io/component-helpers resource/helpers.go ``PodRequests`` / ``PodLimits``
    (``AggregateContainerRequests``): the regular containers and the restartable init containers
    (native sidecars, restartPolicy Always) run together, so they add up; a plain init container runs
    alone beside the sidecars started before it, so the pod needs the largest of those moments; and
    ``spec.overhead`` (a RuntimeClass's pod overhead) is added on top.

    A limit is only a limit when every container declares one: kubelet pkg/kubelet/cm/helpers_linux.go
    ``ResourceConfigForPod`` (its ``PodLimits`` ``ContainerFn`` sees regular and init containers) leaves
    the pod cgroup's memory unlimited otherwise, so one container without a memory limit makes the
    pod's None. Pod-level resources (``spec.resources``, KEP-2837) win when set, as there. A request is
    None when no container declares one, or one is not a quantity (the figure would be wrong).
    """
    overhead = parse_quantity(_object(spec.get("overhead")).get("memory")) or 0
    if pod_level := _container_memory(spec, kind):
        return pod_level + overhead  # PodRequests / PodLimits add the overhead to pod-level values too
    containers = _entries(spec, "containers", [])
    inits = _entries(spec, "initContainers", [])
    if not containers:
        return None
    declared = [_container_memory(c, kind) for c in [*containers, *inits]]
    raw = [_object(_object(c.get("resources")).get(kind)).get("memory") for c in [*containers, *inits]]
    if kind == "limits" and any(value is None for value in declared):
        return None
    if any(v is None and r not in (None, 0, "0") for v, r in zip(declared, raw, strict=True)):
        return None  # a value that is not a quantity: unknown
    amounts = [value or 0 for value in declared]
    running = sum(amounts[: len(containers)])
    sidecars, peak = 0, 0
    for entry, amount in zip(inits, amounts[len(containers) :], strict=True):
        if entry.get("restartPolicy") == "Always":
            sidecars += amount
            peak = max(peak, sidecars)
        else:
            peak = max(peak, sidecars + amount)
    total = max(running + sidecars, peak)
    return total + overhead if total else None


def _object(value: Any) -> JSON:
    """A JSON object, or an empty one for a missing, null or wrongly typed field."""
    return value if isinstance(value, dict) else {}


def _entries(parent: JSON, field: str, problems: list[str]) -> list[JSON]:
    """The objects of a list field (null is an empty list, as the API server renders omitted lists)."""
    value = parent.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{field} is not a list")
        return []
    if not all(isinstance(item, dict) for item in value):
        problems.append(f"{field} has an entry that is not an object")
    return [item for item in value if isinstance(item, dict)]


def _names(parent: JSON, field: str, problems: list[str]) -> tuple[str, ...]:
    return tuple(entry.get("name") or "" for entry in _entries(parent, field, problems))


def _states(
    status: JSON, field: str, spec_names: tuple[str, ...], problems: list[str]
) -> tuple[ContainerState, ...]:
    states: list[ContainerState] = []
    for entry in _entries(status, field, problems):
        state = ContainerState.from_json(entry)
        if not state.name:
            problems.append(f"{field} has a status without a name")
        elif state.name not in spec_names:
            problems.append(f"{field} has a status for {state.name!r}, which the spec does not have")
        else:
            states.append(state)
    return tuple(states)


@dataclasses.dataclass(frozen=True)
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int


def parse_time(value: str | None) -> datetime | None:
    """An RFC3339 timestamp from object metadata (second precision, ``Z``) as an aware datetime."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def format_time(moment: datetime) -> str:
    """RFC3339 in UTC as the API accepts it in ``sinceTime`` (fractions are dropped by the server)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def label_selector(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


@dataclasses.dataclass(frozen=True)
class ApiCredentials:
    """The client's credentials as kr8s loaded them: a bearer token and/or a client certificate, and
    the cluster CA (files, as kr8s writes a kubeconfig's inline data to temporary files)."""

    token: str | None = dataclasses.field(repr=False)  # never in a log line
    client_cert: Path | None
    client_key: Path | None
    ca_file: Path | None
