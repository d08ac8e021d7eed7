"""The few API objects the components need, as small typed values parsed from the API's JSON.

Parsing is pure and tolerant: a field the API left out becomes None or empty rather than an error,
because a pod being scheduled or a VMI being created legitimately lacks a node or a status.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

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

    @classmethod
    def from_json(cls, obj: JSON) -> Vmi:
        meta, status = obj.get("metadata", {}), obj.get("status") or {}
        node = status.get("nodeName") or (meta.get("labels") or {}).get("kubevirt.io/nodeName")
        migration = status.get("migrationState") or {}
        candidates = [node, migration.get("sourceNode"), migration.get("targetNode")]
        candidates += list((status.get("activePods") or {}).values())
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            node=node,
            phase=status.get("phase", "Unknown"),
            labels=dict(meta.get("labels") or {}),
            nodes=tuple(dict.fromkeys(n for n in candidates if isinstance(n, str) and n)),
        )


@dataclasses.dataclass(frozen=True)
class ContainerState:
    name: str
    restart_count: int
    running: bool

    @classmethod
    def from_json(cls, obj: JSON) -> ContainerState:
        return cls(
            name=obj.get("name", ""),
            restart_count=int(obj.get("restartCount", 0)),
            running="running" in (obj.get("state") or {}),
        )


@dataclasses.dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str
    node: str | None
    phase: str
    containers: tuple[str, ...]
    container_states: tuple[ContainerState, ...] = ()
    labels: dict[str, str] = dataclasses.field(default_factory=dict, compare=False)
    created: datetime | None = None

    @classmethod
    def from_json(cls, obj: JSON) -> Pod:
        meta, spec, status = obj.get("metadata", {}), obj.get("spec") or {}, obj.get("status") or {}
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            node=spec.get("nodeName"),
            phase=status.get("phase", "Unknown"),
            containers=tuple(c.get("name", "") for c in spec.get("containers") or ()),
            container_states=tuple(
                ContainerState.from_json(c) for c in status.get("containerStatuses") or ()
            ),
            labels=dict(meta.get("labels") or {}),
            created=parse_time(meta.get("creationTimestamp")),
        )

    def restart_count(self, container: str) -> int:
        return next((c.restart_count for c in self.container_states if c.name == container), 0)


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
