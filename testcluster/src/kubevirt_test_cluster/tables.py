"""Server-side printing: the ``meta.k8s.io/v1 Table`` that ``kubectl get`` asks for.

kubectl requests lists with ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints
the columns the server chose; a plain list would make it fall back to bare names. Pods and VMIs
get the columns of a real cluster (READY/STATUS/RESTARTS/AGE, and KubeVirt's printer columns),
everything else NAME and AGE, as for a custom resource without printer columns.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Sequence
from typing import Any

from .resources import ResourceType

Column = tuple[str, str, str, int]  # name, type, format, priority
Row = Callable[[dict[str, Any], float], list[Any]]


def human_duration(seconds: float) -> str:
    """apimachinery's ``duration.HumanDuration``: ``45s``, ``5m10s``, ``3h7m``, ``12d``."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        return f"{minutes}m{whole % 60}s" if whole % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    return f"{hours // 24 // 365}y"


def age(obj: dict[str, Any], now: float) -> str:
    created = obj.get("metadata", {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    return human_duration(now - calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")))


def _pod_row(pod: dict[str, Any], now: float) -> list[Any]:
    status = pod.get("status", {})
    # kubectl counts native sidecars (restartPolicy: Always init containers) as containers, and every
    # init container's restarts (Kubernetes pkg/printers/internalversion/printers.go ``printPod``).
    sidecars = {
        c["name"]
        for c in pod.get("spec", {}).get("initContainers") or ()
        if c.get("restartPolicy") == "Always"
    }
    init_statuses = status.get("initContainerStatuses") or []
    statuses = status.get("containerStatuses", [])
    ready = sum(1 for item in statuses if item.get("ready"))
    ready += sum(1 for item in init_statuses if item["name"] in sidecars and item.get("ready"))
    total = len(pod.get("spec", {}).get("containers", [])) + len(sidecars)
    restarts = sum(item.get("restartCount", 0) for item in [*statuses, *init_statuses])
    phase = status.get("reason") or status.get("phase", "Unknown")
    if pod.get("metadata", {}).get("deletionTimestamp"):
        phase = "Terminating"
    return [
        pod["metadata"]["name"],
        f"{ready}/{total}",
        phase,
        str(restarts),
        age(pod, now),
        status.get("podIP", "<none>"),
        pod.get("spec", {}).get("nodeName", "<none>"),
        "<none>",
        "<none>",
    ]


def _vmi_row(vmi: dict[str, Any], now: float) -> list[Any]:
    status = vmi.get("status", {})
    interfaces = status.get("interfaces") or [{}]
    ready = next((c.get("status") for c in status.get("conditions", []) if c.get("type") == "Ready"), "")
    return [
        vmi["metadata"]["name"],
        age(vmi, now),
        status.get("phase", ""),
        interfaces[0].get("ipAddress", ""),
        status.get("nodeName", ""),
        ready,
    ]


def _default_row(obj: dict[str, Any], now: float) -> list[Any]:
    return [obj["metadata"]["name"], age(obj, now)]


_NAME: Column = ("Name", "string", "name", 0)
_AGE: Column = ("Age", "string", "", 0)
_LAYOUTS: dict[str, tuple[Sequence[Column], Row]] = {
    "Pod": (
        [
            _NAME,
            ("Ready", "string", "", 0),
            ("Status", "string", "", 0),
            ("Restarts", "string", "", 0),
            _AGE,
            ("IP", "string", "", 1),
            ("Node", "string", "", 1),
            ("Nominated Node", "string", "", 1),
            ("Readiness Gates", "string", "", 1),
        ],
        _pod_row,
    ),
    "VirtualMachineInstance": (
        [
            _NAME,
            ("Age", "date", "", 0),
            ("Phase", "string", "", 0),
            ("IP", "string", "", 0),
            ("NodeName", "string", "", 0),
            ("Ready", "string", "", 0),
        ],
        _vmi_row,
    ),
}


def _row_object(obj: dict[str, Any], include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def table(
    rt: ResourceType, items: list[dict[str, Any]], list_metadata: dict[str, Any], include: str
) -> dict[str, Any]:
    """A Table of the given objects; ``include`` is the ``includeObject`` parameter (default Metadata)."""
    columns, row = _LAYOUTS.get(rt.kind, ([_NAME, _AGE], _default_row))
    now = time.time()
    rows = []
    for item in items:
        entry: dict[str, Any] = {"cells": row(item, now)}
        row_object = _row_object(item, include)
        if row_object is not None:
            entry["object"] = row_object
        rows.append(entry)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": [
            {"name": name, "type": kind, "format": fmt, "description": name, "priority": priority}
            for name, kind, fmt, priority in columns
        ],
        "rows": rows,
    }


def wants_table(accept: str) -> bool:
    return "as=Table" in accept.replace(" ", "")
