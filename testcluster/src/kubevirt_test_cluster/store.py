"""Object storage with API-server semantics, kept in kmock's ``ObjectsArray``.

kmock stores objects as given: no ``uid``, no ``resourceVersion``, no ``creationTimestamp``, no
namespace check, no name generation, no finalizer-aware deletion of namespace contents. Clients
and kubectl rely on all of these (``kubectl apply`` reads ``resourceVersion``; a collector keys
its state on ``metadata.uid``). This store adds them, while keeping objects in the emulator's
``objects`` array so that kmock's history views (``api.objects[res, ns, name].history``) and its
watch streams still work.

Every function here runs on the server's event loop thread; nothing awaits, so each call is atomic.
"""

from __future__ import annotations

import asyncio
import calendar
import copy
import random
import time
from collections.abc import Callable
from typing import Any

import kmock

from . import errors
from .objects import new_uid, now_rfc3339, random_suffix
from .resources import NAMESPACE, RESOURCES, ResourceType
from .selectors import FieldSelector, LabelSelector, field_values

Body = dict[str, Any]
DEFAULT_GRACE_SECONDS = 30  # pkg/apis/core/v1/defaults.go SetDefaults_PodSpec: terminationGracePeriodSeconds
Listener = Callable[[ResourceType, str, Body], None]  # (resource, ADDED|MODIFIED|DELETED, object)


def _sort_key(obj: Body) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return meta.get("namespace", "") or "", meta.get("name", "")


class Store:
    def __init__(
        self,
        objects: kmock.ObjectsArray,
        rng: random.Random,
        listener: Listener,
        namespace_finalize_delay: float = 0.1,
    ) -> None:
        self._objects = objects
        self.namespace_finalize_delay = namespace_finalize_delay
        self._rng = rng
        self._listener = listener
        self._keys = {rt: kmock.resource(rt.group, rt.version, rt.plural) for rt in RESOURCES}
        self.resource_version = 1000
        self._grace_timers: dict[tuple[ResourceType, str | None, str], asyncio.TimerHandle] = {}

    def key(self, rt: ResourceType) -> kmock.resource:
        return self._keys[rt]

    def _next_version(self) -> str:
        self.resource_version += 1
        return str(self.resource_version)

    # ---- reading ------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Body | None:
        key = (self.key(rt), namespace if rt.namespaced else None, name)
        if key not in self._objects:
            return None
        obj = self._objects[key]
        return None if obj.deleted else obj.raw

    def require(self, rt: ResourceType, namespace: str | None, name: str) -> Body:
        found = self.get(rt, namespace, name)
        if found is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return found

    def namespace_exists(self, name: str) -> bool:
        return self.get(NAMESPACE, None, name) is not None

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
    ) -> list[Body]:
        """Matching objects in API order (by namespace, then name)."""
        key = self.key(rt)
        found: list[Body] = []
        for (resource, object_namespace, _), obj in self._objects.items():
            if resource is not key and resource != key:
                continue
            if namespace is not None and object_namespace != namespace:
                continue
            if obj.deleted:
                continue
            raw = obj.raw
            if (
                labels is not None
                and labels.requirements
                and not labels.matches(raw["metadata"].get("labels") or {})
            ):
                continue
            if (
                fields is not None
                and fields.requirements
                and not fields.matches(field_values(raw, rt.field_labels))
            ):
                continue
            found.append(raw)
        found.sort(key=_sort_key)
        return found

    # ---- writing ------------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str | None, body: Body, *, dry_run: bool = False) -> Body:
        """Admit a new object as the API server does: name, uid, timestamps, defaults."""
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        namespace = self._admit_namespace(rt, namespace, meta)
        name = meta.get("name") or self._generate_name(rt, meta)
        if self.get(rt, namespace, name) is not None:
            raise errors.already_exists(rt.plural, rt.group, name)
        meta["name"] = name
        meta.setdefault("uid", new_uid(self._rng))
        meta.setdefault("creationTimestamp", now_rfc3339())
        if rt.group:
            meta.setdefault("generation", 1)
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(key, None)
        body["apiVersion"], body["kind"] = rt.api_version, rt.kind
        _apply_defaults(rt, body, self._rng)
        if dry_run:
            return body
        return self._write(rt, body, "ADDED")

    def _admit_namespace(self, rt: ResourceType, namespace: str | None, meta: Body) -> str | None:
        if not rt.namespaced:
            meta.pop("namespace", None)
            return None
        if namespace is None:
            raise errors.unknown_path()
        if meta.get("namespace") not in (None, "", namespace):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        found = self.get(NAMESPACE, None, namespace)
        if found is None:
            raise errors.not_found("namespaces", "", namespace)
        if found["metadata"].get("deletionTimestamp"):
            raise errors.ApiError(
                403,
                f'{rt.plural} "{meta.get("name") or ""}" is forbidden: unable to create new '
                f"content in namespace {namespace} because it is being terminated",
            )
        meta["namespace"] = namespace
        return namespace

    def _generate_name(self, rt: ResourceType, meta: Body) -> str:
        prefix = meta.get("generateName")
        if not prefix:
            raise errors.invalid(
                rt.kind, rt.group, "", "metadata.name: Required value: name or generateName is required"
            )
        return f"{prefix}{random_suffix(self._rng)}"

    def put(self, rt: ResourceType, body: Body) -> Body:
        """Store a new object or version from the population helpers (no admission checks)."""
        event = (
            "MODIFIED"
            if self.get(rt, body["metadata"].get("namespace"), body["metadata"]["name"])
            else "ADDED"
        )
        return self._write(rt, body, event)

    def update(self, rt: ResourceType, current: Body, new: Body, *, dry_run: bool = False) -> Body:
        """A new version of an existing object: identity kept, resourceVersion checked and bumped."""
        meta, old_meta = dict(new.get("metadata") or {}), current["metadata"]
        if meta.get("resourceVersion") not in (None, "", old_meta.get("resourceVersion")):
            raise errors.conflict(rt.plural, rt.group, old_meta["name"])
        kept = ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "generateName")
        for key in (*kept, "deletionGracePeriodSeconds"):
            if key in old_meta:
                meta[key] = old_meta[key]
        if rt.group and new.get("spec") != current.get("spec"):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        new = {**new, "apiVersion": rt.api_version, "kind": rt.kind, "metadata": meta}
        if dry_run:
            return new
        # registry/generic/registry/store.go ``Update`` (``ShouldDeleteDuringUpdate``): an object marked
        # for deletion goes once its last finalizer does, unless a grace period is still running
        graceful = meta.get("deletionGracePeriodSeconds")
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not graceful
            and rt is not NAMESPACE
        ):
            return self._remove(rt, new)
        return self._write(rt, new, "MODIFIED")

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        dry_run: bool = False,
        grace_period_seconds: int | None = None,
    ) -> Body:
        """Delete now, mark for deletion while finalizers remain, or (pods) delete gracefully.

        ``grace_period_seconds`` is DeleteOptions' ``gracePeriodSeconds`` (None: not sent); only pods
        delete gracefully, as only their registry strategy implements ``CheckGracefulDelete``.
        """
        current = self.require(rt, namespace, name)
        if dry_run:
            return current
        meta = current["metadata"]
        if rt.kind == "Pod":
            return self._delete_pod(rt, current, grace_period_seconds)
        if meta.get("deletionTimestamp"):
            return current
        if rt is NAMESPACE:
            return self._terminate_namespace(current)
        return self._delete_now(rt, current)

    def _delete_now(self, rt: ResourceType, current: Body) -> Body:
        meta = current["metadata"]
        if meta.get("finalizers"):
            marked = {
                **current,
                "metadata": {**meta, "deletionTimestamp": now_rfc3339(), "deletionGracePeriodSeconds": 0},
            }
            return self._write(rt, marked, "MODIFIED")
        return self._remove(rt, current)

    # ---- graceful pod deletion ------------------------------------------------------------------
    # kube-apiserver: staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go ``BeforeDelete`` sets
    # deletionTimestamp = now + grace and deletionGracePeriodSeconds on the first graceful delete (a
    # MODIFIED event), and on a later one only shortens the grace; pkg/registry/core/pod/strategy.go
    # ``CheckGracefulDelete`` picks the grace: DeleteOptions.gracePeriodSeconds, else the pod's
    # spec.terminationGracePeriodSeconds (defaulted to 30), 0 for a pod not scheduled or already
    # Succeeded/Failed, 1 for a negative value; registry/generic/registry/store.go
    # ``updateForGracefulDeletionAndFinalizers`` removes the object at once when the grace is 0 and no
    # finalizer is left. The kubelet then stops the containers and removes the pod (a DELETE with grace
    # 0); here the removal happens when the grace period ends, or on ``finish_deletion``. Until then
    # the pod, and its logs, are still served.

    def _delete_pod(self, rt: ResourceType, current: Body, requested: int | None) -> Body:
        meta = current["metadata"]
        if requested is not None and requested < 0:
            requested = 1
        marked_grace = meta.get("deletionGracePeriodSeconds")
        if meta.get("deletionTimestamp"):
            if not marked_grace:  # marked with grace 0: waiting for its finalizers
                return current if meta.get("finalizers") else self._delete_now(rt, current)
            if requested is None or requested >= marked_grace:
                return current  # graceful deletion pending: unchanged
            deadline = _parse_time(meta["deletionTimestamp"]) - marked_grace + requested
            return self._mark_graceful(rt, current, requested, deadline)
        period = requested
        if period is None:
            default = (current.get("spec") or {}).get("terminationGracePeriodSeconds")
            period = default if isinstance(default, int) else DEFAULT_GRACE_SECONDS
        if not (current.get("spec") or {}).get("nodeName"):
            period = 0
        if (current.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            period = 0
        if period < 0:
            period = 1
        if period == 0:
            return self._delete_now(rt, current)
        return self._mark_graceful(rt, current, period, int(time.time()) + period)

    def _mark_graceful(self, rt: ResourceType, current: Body, period: int, deadline: int) -> Body:
        meta = dict(current["metadata"])
        meta["deletionTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deadline))
        meta["deletionGracePeriodSeconds"] = period
        if meta.get("generation"):
            meta["generation"] = int(meta["generation"]) + 1
        if period == 0:
            return self._delete_now(rt, {**current, "metadata": meta})
        marked = self._write(rt, {**current, "metadata": meta}, "MODIFIED")
        key = (rt, meta.get("namespace"), meta["name"])
        if (timer := self._grace_timers.pop(key, None)) is not None:
            timer.cancel()
        delay = max(0.0, deadline - time.time())
        self._grace_timers[key] = asyncio.get_running_loop().call_later(
            delay, self.finish_deletion, rt, meta.get("namespace"), meta["name"]
        )
        return marked

    def finish_deletion(self, rt: ResourceType, namespace: str | None, name: str) -> Body | None:
        """The grace period is over (or a test ends it early): the kubelet's final delete."""
        if (timer := self._grace_timers.pop((rt, namespace, name), None)) is not None:
            timer.cancel()
        current = self.get(rt, namespace, name)
        if current is None or not current["metadata"].get("deletionTimestamp"):
            return None
        if current["metadata"].get("finalizers"):
            meta = {**current["metadata"], "deletionGracePeriodSeconds": 0}
            return self._write(rt, {**current, "metadata": meta}, "MODIFIED")
        return self._remove(rt, current)

    def _terminate_namespace(self, current: Body) -> Body:
        """Namespaces go ``Terminating``; the namespace controller then empties and removes them."""
        marked = {
            **current,
            "metadata": {**current["metadata"], "deletionTimestamp": now_rfc3339()},
            "status": {"phase": "Terminating"},
        }
        marked = self._write(NAMESPACE, marked, "MODIFIED")
        name = current["metadata"]["name"]
        asyncio.get_running_loop().call_later(self.namespace_finalize_delay, self._finalize_namespace, name)
        return marked

    def _finalize_namespace(self, name: str) -> None:
        current = self.get(NAMESPACE, None, name)
        if current is not None and current["metadata"].get("deletionTimestamp"):
            self._delete_contents(name)
            self._remove(NAMESPACE, current)

    def _remove(self, rt: ResourceType, current: Body) -> Body:
        meta = current["metadata"]
        self._objects[self.key(rt), meta.get("namespace") if rt.namespaced else None, meta["name"]].delete()
        gone = {**current, "metadata": {**meta, "resourceVersion": self._next_version()}}
        self._listener(rt, "DELETED", gone)
        return gone

    def _delete_contents(self, namespace: str) -> None:
        for rt in RESOURCES:
            if rt.namespaced:
                for obj in self.list(rt, namespace):
                    self._remove(rt, obj)

    def _write(self, rt: ResourceType, body: Body, event: str) -> Body:
        body = {**body, "metadata": {**body["metadata"], "resourceVersion": self._next_version()}}
        key = (
            self.key(rt),
            body["metadata"].get("namespace") if rt.namespaced else None,
            body["metadata"]["name"],
        )
        if key in self._objects:
            self._objects[key].history.append(body)
        else:
            self._objects[key] = body
        self._listener(rt, event, body)
        return body


def _apply_defaults(rt: ResourceType, body: Body, rng: random.Random) -> None:
    """The few defaults other components or the API server would fill in."""
    if rt.kind == "Namespace":
        body.setdefault("spec", {"finalizers": ["kubernetes"]})
        body["status"] = {"phase": "Active"}
        body["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = body["metadata"]["name"]
    elif rt.kind == "Service":
        spec = body.setdefault("spec", {})
        if "clusterIP" not in spec:
            spec["clusterIP"] = f"10.96.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("type", "ClusterIP")
        body.setdefault("status", {"loadBalancer": {}})
    elif rt.kind == "Pod":
        body.setdefault("status", {"phase": "Pending", "qosClass": "BestEffort"})
        body.setdefault("spec", {}).setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
    elif rt.kind == "PersistentVolumeClaim":
        body.setdefault("status", {"phase": "Pending"})


def _parse_time(text: str) -> int:
    """A second-precision RFC 3339 time (as metav1.Time is written) in seconds since the epoch."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
