"""What a run plans from, and where it comes from while running: three watch caches.

``Caches`` holds the ``kube.ObjectCache`` of the VMIs, of the launcher pods and of the virt-handler
pods; ``inventory()`` turns their snapshots into the typed objects ``plan`` reads. An object the models
cannot take (a hostile API answer) is skipped alone: logged, counted, never the run.

The caches keep each object as parsed JSON, about three times its size on the wire: at 10,000 VMs
the full pods and VMIs alone would be some 250 MB. ``slim_pod`` and ``slim_vmi`` keep only what the
models, ``plan`` and ``triggers`` read (and what the cache itself needs: name, namespace, uid,
resourceVersion), as client-go's informers do with a transform (tools/cache/shared_informer.go,
``TransformFunc``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ..kube import KubeClient, Pod, Vmi
from ..kube.watch import ObjectCache
from .plan import handlers_by_node

log = logging.getLogger(__name__)
T = TypeVar("T")


JSON = dict[str, Any]
_META = ("name", "namespace", "uid", "resourceVersion", "labels", "creationTimestamp")
_POD_META = (*_META, "ownerReferences", "deletionTimestamp", "deletionGracePeriodSeconds")


def slim_pod(obj: JSON) -> JSON:
    """A pod with what logs-collector reads of it (see the module docstring); anything odd is kept as
    it is, for the models to judge."""
    if not isinstance(obj, dict):
        return obj
    spec, status = _object(obj.get("spec")), _object(obj.get("status"))
    slim_spec: JSON = {"nodeName": spec.get("nodeName")}
    for field, keep in (("containers", ("name",)), ("initContainers", ("name", "restartPolicy"))):
        if field in spec:
            slim_spec[field] = _entries(spec[field], keep)
    slim_status: JSON = {"phase": status.get("phase")}
    for field in ("containerStatuses", "initContainerStatuses"):
        if field in status:
            value = status[field]
            slim_status[field] = [_status(e) for e in value] if isinstance(value, list) else value
    return _compact_object({**_slim_meta(obj, _POD_META), "spec": slim_spec, "status": slim_status})


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


def slim_vmi(obj: JSON) -> JSON:
    """A VMI with what logs-collector reads of it: its node(s), phase and hostname."""
    if not isinstance(obj, dict):
        return obj
    spec, status = _object(obj.get("spec")), _object(obj.get("status"))
    migration = _object(status.get("migrationState"))
    slim_status: JSON = {k: status[k] for k in ("nodeName", "phase", "activePods") if k in status}
    if migration:
        slim_status["migrationState"] = {k: migration.get(k) for k in ("sourceNode", "targetNode")}
    slim = {**_slim_meta(obj, _META), "spec": {"hostname": spec.get("hostname")}, "status": slim_status}
    return _compact_object(slim)


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


INTERNED_LENGTH = 32  # names, phases, nodes, times; not UIDs (36), which are unique anyway


def _entries(value: Any, keep: tuple[str, ...]) -> Any:
    if not isinstance(value, list):
        return value
    return [{k: e[k] for k in keep if k in e} if isinstance(e, dict) else e for e in value]


def _object(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


@dataclasses.dataclass(frozen=True)
class Inventory:
    """The VMIs, their launcher pods, the virt-handler pod of each node."""

    vmis: Sequence[Vmi]
    launcher_pods: Sequence[Pod]
    handlers: Mapping[str, Pod]


@dataclasses.dataclass
class Caches:
    vmis: ObjectCache
    launcher_pods: ObjectCache
    handler_pods: ObjectCache
    bad_objects: int = 0  # objects the models could not take (each logged)

    @classmethod
    def of(
        cls, client: KubeClient, namespaces: Sequence[str], handler_namespace: str, **options: Any
    ) -> Caches:
        """The three caches, keeping slim objects (``options``: the caches', e.g. a retry policy)."""
        return cls(
            client.vmi_cache(namespaces, transform=slim_vmi, **options),
            client.launcher_pod_cache(namespaces, transform=slim_pod, **options),
            client.handler_pod_cache(handler_namespace, transform=slim_pod, **options),
        )

    @property
    def all(self) -> tuple[ObjectCache, ...]:
        return (self.vmis, self.launcher_pods, self.handler_pods)

    async def wait_synced(self) -> None:
        await asyncio.gather(*(cache.wait_synced() for cache in self.all))

    def inventory(self) -> Inventory:
        """The caches' objects now, typed (no API call)."""
        vmis = self._typed(self.vmis.snapshot(), Vmi.from_json, "VMI")
        pods = self._typed(self.launcher_pods.snapshot(), Pod.from_json, "launcher pod")
        handlers = self._typed(self.handler_pods.snapshot(), Pod.from_json, "virt-handler pod")
        return Inventory(vmis, pods, handlers_by_node(handlers))

    def _typed(
        self, objects: list[dict[str, Any]], parse: Callable[[dict[str, Any]], T], what: str
    ) -> list[T]:
        typed: list[T] = []
        for obj in objects:
            try:
                typed.append(parse(obj))
            except Exception as exc:  # a hostile object fails alone
                self.bad_objects += 1
                meta = obj.get("metadata") if isinstance(obj, dict) else None
                name = f"{meta.get('namespace')}/{meta.get('name')}" if isinstance(meta, dict) else "?"
                log.warning(
                    "object not understood, skipped",
                    extra={"kind": what, "object": name, "reason": repr(exc)},
                )
        return typed
