"""What the caches keep of a pod or a VMI: only what ``models`` reads (and the cache itself needs).

A watch cache keeps each object as parsed JSON, about three times its size on the wire: at 10,000 VMs
the full launcher pods and VMIs are some 250 MB, most of it volumes, environment, probes, conditions and
annotations nobody here reads. ``slim_pod`` and ``slim_vmi`` keep the fields :class:`~.models.Pod` and
:class:`~.models.Vmi` are built from, the deletion fields logs-collector's triggers read, and what
``ObjectCache`` needs (name, namespace, uid, resourceVersion), as client-go's informers do with a
transform (tools/cache/shared_informer.go, ``TransformFunc``). Pure.

Anything odd (a field of the wrong type) is kept as it is, for the models to judge: a hostile object
must fail where it is parsed, logged and counted, not vanish here.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["slim_pod", "slim_vmi"]

JSON = dict[str, Any]
_META = ("name", "namespace", "uid", "resourceVersion", "labels", "creationTimestamp")
_POD_META = (*_META, "ownerReferences", "deletionTimestamp", "deletionGracePeriodSeconds")
# Pod.from_json and pod_memory: names, sidecar policy, memory requests and limits.
_CONTAINER = ("name", "restartPolicy", "resources")
INTERNED_LENGTH = 32  # names, phases, nodes, times; not UIDs (36), which are unique anyway


def slim_pod(obj: JSON) -> JSON:
    """A pod with what the models read (see the module docstring)."""
    if not isinstance(obj, dict):
        return obj
    spec, status = _object(obj.get("spec")), _object(obj.get("status"))
    slim_spec: JSON = {key: spec[key] for key in ("nodeName", "resources", "overhead") if key in spec}
    for field in ("containers", "initContainers"):
        if field in spec:
            slim_spec[field] = _entries(spec[field], _CONTAINER)
    slim_status: JSON = {"phase": status.get("phase")}
    for field in ("containerStatuses", "initContainerStatuses"):
        if field in status:
            value = status[field]
            slim_status[field] = [_status(e) for e in value] if isinstance(value, list) else value
    return _compact_object({**_slim_meta(obj, _POD_META), "spec": slim_spec, "status": slim_status})


def slim_vmi(obj: JSON) -> JSON:
    """A VMI with what the models read: its node(s), phase, hostname and guest memory."""
    if not isinstance(obj, dict):
        return obj
    spec, status = _object(obj.get("spec")), _object(obj.get("status"))
    migration = _object(status.get("migrationState"))
    slim_status: JSON = {k: status[k] for k in ("nodeName", "phase", "activePods") if k in status}
    if migration:
        slim_status["migrationState"] = {k: migration.get(k) for k in ("sourceNode", "targetNode")}
    slim_spec: JSON = {"hostname": spec.get("hostname")}
    domain = spec.get("domain")
    if isinstance(domain, dict):
        slim_spec["domain"] = {key: domain[key] for key in ("memory", "resources") if key in domain}
    elif domain is not None:
        slim_spec["domain"] = domain
    return _compact_object({**_slim_meta(obj, _META), "spec": slim_spec, "status": slim_status})


def _status(entry: Any) -> Any:
    if not isinstance(entry, dict):
        return entry
    slim = {key: entry[key] for key in ("name", "restartCount") if key in entry}
    if "state" in entry:
        slim["state"] = _slim_state(entry["state"])
    return slim


def _slim_state(state: Any) -> Any:
    """``running``/``terminated``/``waiting`` with only ``startedAt`` (``ContainerState.from_json``)."""
    if not isinstance(state, dict):
        return state
    return {
        key: {"startedAt": value.get("startedAt")} if isinstance(value, dict) else value
        for key, value in state.items()
    }


def _slim_meta(obj: JSON, keep: tuple[str, ...]) -> JSON:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return {"metadata": meta}
    return {"metadata": {key: meta[key] for key in keep if key in meta}}


def _compact_object(obj: JSON) -> JSON:
    return {sys.intern(key): _compact(value) for key, value in obj.items()}


def _compact(value: Any) -> Any:
    """The same JSON with its keys and short strings interned: every object's ``"name"``, ``"phase"``,
    container and node names are one string each, not one per object (json.loads shares keys only
    within one document, and each watch event is one)."""
    if isinstance(value, dict):
        return {sys.intern(k) if isinstance(k, str) else k: _compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compact(item) for item in value]
    if isinstance(value, str) and len(value) <= INTERNED_LENGTH:
        return sys.intern(value)
    return value


def _entries(value: Any, keep: tuple[str, ...]) -> Any:
    if not isinstance(value, list):
        return value
    return [{k: e[k] for k in keep if k in e} if isinstance(e, dict) else e for e in value]


def _object(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}
