"""The HTTP face of the test cluster: kmock's ``KubernetesEmulator`` with the real API's behaviour.

kmock gives an object database over HTTP and a reaction DSL. What a log and memory collector
needs from a Kubernetes API goes beyond it, and every gap is filled here, in front of kmock:

* selectors (label and field) and pagination on lists, typed ``PodList``-style list bodies;
* admission of created objects (uid, resourceVersion, timestamps, namespace must exist),
  JSON / merge / strategic-merge patches, PUT, finalizer-aware deletion that cascades from
  namespaces, and ``Status`` error bodies with real reasons and messages;
* discovery that kubectl accepts (a correct ``/api/v1``, ``/version/``, OpenAPI v3 for apply),
  and server-side printing (``Table``) for ``kubectl get``;
* ``pods/log`` rendered like kubelet, ``pods/exec`` over WebSocket, the node proxy to the kubelet
  Summary API;
* fault injection and a request journal.

Requests that none of this claims (e.g. paths tests declare with kmock's DSL) go on to kmock.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import kmock
import yaml
from aiohttp import web

from . import container_exec, errors, patches, resources, tables, watch
from .container_exec import CommandResult, ExecHandler, Process
from .errors import ApiError
from .faults import Faults, Journal, _Entry
from .kubelets import KubeletFleet
from .logs import ContainerLog, PodLogOptions
from .objects import container_names
from .resources import NODE, POD, ResourcePath, ResourceType
from .selectors import FieldSelector, LabelSelector
from .stats import ContainerMemory, MemoryKey, summary
from .store import Body, Store

logger = logging.getLogger(__name__)

_current_entry: contextvars.ContextVar[_Entry | None] = contextvars.ContextVar("_current_entry", default=None)

PodKey = tuple[str, str]  # namespace, pod name


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def status_response(error: ApiError) -> web.Response:
    return json_response(error.status(), error.code, error.headers)


def _query(raw: web.BaseRequest) -> dict[str, str]:
    return {key: raw.query.get(key, "") for key in raw.query}


def pick_container(pod: Body, requested: str | None) -> str:
    """The API server's container choice for logs and exec (it ignores the default-container annotation)."""
    # Kubernetes pkg/registry/core/pod/strategy.go ``validateContainer``: a named container may be any
    # of the pod's (init containers and native sidecars too); without a name, only a lone container.
    names: list[str] = [spec["name"] for spec in pod.get("spec", {}).get("containers", [])]
    everything = container_names(pod)
    pod_name = pod["metadata"]["name"]
    if requested:
        if requested not in everything:
            raise errors.bad_request(f"container {requested} is not valid for pod {pod_name}")
        return requested
    if len(names) == 1:
        return names[0]
    if not names:
        raise errors.bad_request(f"a container name must be specified for pod {pod_name}")
    raise errors.bad_request(
        f"a container name must be specified for pod {pod_name}, choose one of: [{' '.join(everything)}]"
    )


class PodLogs:
    """Log runs per pod and container: ``[..., previous, current]``."""

    def __init__(self) -> None:
        self._runs: dict[PodKey, dict[str, list[ContainerLog]]] = {}

    def runs(self, namespace: str, pod: str, container: str) -> list[ContainerLog]:
        return self._runs.setdefault((namespace, pod), {}).setdefault(container, [ContainerLog()])

    def restart(self, namespace: str, pod: str, container: str) -> None:
        runs = self.runs(namespace, pod, container)
        runs[-1].close()
        runs.append(ContainerLog())
        del runs[:-2]  # kubelet keeps the current and the previous run only

    def close_all(self) -> None:
        for containers in self._runs.values():
            for runs in containers.values():
                for run in runs:
                    run.close()

    def forget(self, namespace: str, pod: str) -> None:
        for runs in self._runs.pop((namespace, pod), {}).values():
            for run in runs:
                run.close()


@attrs.define(kw_only=True)
class KubeApi(kmock.KubernetesEmulator):
    """The API server. Everything but construction runs on the server's event loop thread."""

    rng: random.Random = attrs.field(factory=random.Random)
    server_address: str = ""
    store: Store = attrs.field(init=False)
    pod_logs: PodLogs = attrs.field(factory=PodLogs, init=False)
    memory: dict[MemoryKey, ContainerMemory] = attrs.field(factory=dict, init=False)
    processes: dict[PodKey, dict[int, Process]] = attrs.field(factory=dict, init=False)
    exec_handler: ExecHandler | None = attrs.field(default=None, init=False)
    faults: Faults = attrs.field(factory=Faults, init=False)
    journal: Journal = attrs.field(factory=Journal, init=False)
    vanishing: set[PodKey] = attrs.field(factory=set, init=False)
    unreachable_nodes: set[str] = attrs.field(factory=set, init=False)
    raw_summaries: dict[str, Any] = attrs.field(factory=dict, init=False)  # served as is (hostile input)
    pods_by_node: dict[str, set[PodKey]] = attrs.field(factory=dict, init=False)  # may hold stale keys
    watches: watch.WatchHub = attrs.field(factory=watch.WatchHub, init=False)
    kubelets: KubeletFleet | None = attrs.field(default=None, init=False)  # HTTPS kubelets, one per node

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.store = Store(self.objects, self.rng, self._on_change)
        for rt in resources.RESOURCES:
            self.resources[self.store.key(rt)] = kmock.ResourceInfo(
                namespaced=rt.namespaced,
                kind=rt.kind,
                singular=rt.singular,
                verbs=resources.NAMESPACED_VERBS,
                shortnames=rt.short_names,
                categories=rt.categories,
                subresources=[sub.name for sub in rt.subresources],
            )

    # ---- entry point ----------------------------------------------------------------------------

    async def __call__(self, raw: web.BaseRequest) -> web.StreamResponse:
        entry = self.journal.begin(raw.method, raw.path, raw.query_string)
        _current_entry.set(entry)
        try:
            response = await self._serve(raw)
        except ApiError as error:
            response = status_response(error)
        except kmock.KubernetesError as error:
            response = status_response(_from_kmock(error))
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as error:  # a bug here must reach the client as a 500, not a hang
            logger.exception("test cluster failed on %s %s", raw.method, raw.path_qs)
            response = status_response(ApiError(500, f"Internal error occurred: {error!r}"))
        if entry.status is None:
            entry.status = response.status
        return response

    async def _serve(self, raw: web.BaseRequest) -> web.StreamResponse:
        fault = self.faults.take(raw.method, raw.path, raw.query_string)
        if fault is not None:
            if fault.kind == "drop":
                return self._drop(raw)
            if fault.kind == "status":
                raise fault.error()
            await asyncio.sleep(fault.seconds)
        body = await raw.read()
        discovery = self._discovery(raw) if raw.method == "GET" else None
        if discovery is not None:
            return discovery
        parsed = resources.parse_path(raw.path)
        rt = resources.find(parsed.group, parsed.version, parsed.plural) if parsed else None
        if parsed is None or rt is None:
            return await self._fallback(raw, body, parsed)
        return await self._serve_resource(raw, body, parsed, rt)

    def _drop(self, raw: web.BaseRequest) -> web.Response:
        entry = _current_entry.get()
        if entry is not None:
            entry.status = 0
        if raw.transport is not None:
            raw.transport.abort()
        return web.Response(status=500)

    async def _fallback(
        self, raw: web.BaseRequest, body: bytes, parsed: ResourcePath | None
    ) -> web.StreamResponse:
        """Hand the request to kmock: reactions tests declared with its DSL, and its root document."""
        query = _query(raw)
        request = kmock.Request(
            id=len(self._requests),
            raw_request=raw,
            method=raw.method,
            url=raw.url,
            params=query,
            headers=dict(raw.headers),
            body=body,
            text=body.decode(errors="replace"),
            data=_loads(body),
            action=_kmock_action(raw.method, parsed, query) if parsed else None,
            resource=kmock.resource(parsed.group, parsed.version, parsed.plural) if parsed else None,
            namespace=parsed.namespace if parsed else None,
            name=parsed.name if parsed else None,
            subresource=parsed.subresource if parsed else None,
        )
        self._requests.append(request)  # kmock's views match requests by looking them up in this history
        try:
            return await self._handle(request)
        except NotImplementedError:
            raise errors.unknown_path() from None

    # ---- discovery --------------------------------------------------------------------------------

    def _discovery(self, raw: web.BaseRequest) -> web.StreamResponse | None:
        path = raw.path.rstrip("/") or "/"
        document: Any = None
        if path == "/version":
            document = resources.version_info()
        elif path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok", content_type="text/plain")
        elif path == "/api":
            document = resources.api_versions(self.server_address)
        elif path == "/apis":
            document = resources.api_group_list()
        elif path == "/openapi/v3":
            document = resources.openapi_paths()
        elif path.startswith("/openapi/v3/"):
            document = resources.openapi_document(path.removeprefix("/openapi/v3/")) or _raise(
                errors.unknown_path()
            )
        elif match := re.fullmatch(r"/api/([^/]+)", path):
            document = resources.api_resource_list("", match.group(1)) or _raise(errors.unknown_path())
        elif match := re.fullmatch(r"/apis/([^/]+)", path):
            document = resources.api_group(match.group(1)) or _raise(errors.unknown_path())
        elif match := re.fullmatch(r"/apis/([^/]+)/([^/]+)", path):
            document = resources.api_resource_list(match.group(1), match.group(2)) or _raise(
                errors.unknown_path()
            )
        return None if document is None else json_response(document)

    # ---- resources --------------------------------------------------------------------------------

    async def _serve_resource(
        self, raw: web.BaseRequest, body: bytes, path: ResourcePath, rt: ResourceType
    ) -> web.StreamResponse:
        method, query = raw.method, _query(raw)
        if path.namespace is not None and not rt.namespaced:
            raise errors.unknown_path()
        if path.subresource is None and not path.extra:
            if path.name is None:
                return await self._serve_collection(raw, method, query, body, path, rt)
            return self._serve_object(raw, method, query, body, path, rt)
        if path.name is None:
            raise errors.unknown_path()
        if rt is POD and path.subresource == "log" and method == "GET":
            return await self._serve_log(raw, path, query)
        if rt is POD and path.subresource == "exec" and method in ("GET", "POST"):
            return await self._serve_exec(raw, path)
        if rt is NODE and path.subresource == "proxy":
            return self._serve_node_proxy(method, path)
        if path.subresource == "status" and not path.extra:
            return self._serve_object(raw, method, query, body, path, rt, status_only=True)
        raise errors.unknown_path()

    async def _serve_collection(
        self,
        raw: web.BaseRequest,
        method: str,
        query: dict[str, str],
        body: bytes,
        path: ResourcePath,
        rt: ResourceType,
    ) -> web.StreamResponse:
        if method == "GET":
            if query.get("watch") in ("true", "1"):
                return await self._watch(raw, query, path, rt)
            return self._list(raw, query, path, rt)
        if method == "POST":
            created = self.store.create(
                rt, path.namespace, _require_object(body, raw.content_type), dry_run=bool(query.get("dryRun"))
            )
            return json_response(created, 201)
        if method == "DELETE":
            doomed = self.store.list(rt, path.namespace, *self._selectors(query, rt))
            for obj in doomed:
                self.store.delete(rt, obj["metadata"].get("namespace"), obj["metadata"]["name"])
            return json_response(
                self._list_body(rt, doomed, {"resourceVersion": str(self.store.resource_version)})
            )
        raise errors.method_not_allowed()

    def _serve_object(
        self,
        raw: web.BaseRequest,
        method: str,
        query: dict[str, str],
        body: bytes,
        path: ResourcePath,
        rt: ResourceType,
        *,
        status_only: bool = False,
    ) -> web.StreamResponse:
        assert path.name is not None
        if rt.namespaced and path.namespace is None:
            raise errors.unknown_path()
        dry_run = bool(query.get("dryRun"))
        if method == "GET":
            obj = self.store.require(rt, path.namespace, path.name)
            if tables.wants_table(raw.headers.get("Accept", "")):
                return json_response(
                    tables.table(
                        rt,
                        [obj],
                        {"resourceVersion": obj["metadata"]["resourceVersion"]},
                        query.get("includeObject", "Metadata"),
                    )
                )
            return json_response(obj)
        if method == "DELETE":
            grace = _grace_period(query, body)
            return json_response(
                self.store.delete(rt, path.namespace, path.name, dry_run=dry_run, grace_period_seconds=grace)
            )
        if method in ("PATCH", "PUT"):
            return self._write(raw, method, body, path, rt, status_only=status_only, dry_run=dry_run)
        raise errors.method_not_allowed()

    def _write(
        self,
        raw: web.BaseRequest,
        method: str,
        body: bytes,
        path: ResourcePath,
        rt: ResourceType,
        *,
        status_only: bool,
        dry_run: bool,
    ) -> web.StreamResponse:
        assert path.name is not None
        current = self.store.get(rt, path.namespace, path.name)
        if current is None:
            if raw.content_type == "application/apply-patch+yaml" and not status_only:
                created = self.store.create(
                    rt, path.namespace, _require_object(body, raw.content_type), dry_run=dry_run
                )
                return json_response(created, 201)
            raise errors.not_found(rt.plural, rt.group, path.name)
        if method == "PUT":
            new = _require_object(body, raw.content_type)
        else:
            new = _apply_patch(rt, current, body, raw.content_type)
        if status_only:
            new = {
                **current,
                "status": new.get("status"),
                "metadata": new.get("metadata", current["metadata"]),
            }
        elif any(sub.name == "status" for sub in rt.subresources):
            new = {**new, "status": current.get("status")} if "status" in current else new
        return json_response(self.store.update(rt, current, new, dry_run=dry_run))

    # ---- lists --------------------------------------------------------------------------------

    @staticmethod
    def _selectors(query: dict[str, str], rt: ResourceType) -> tuple[LabelSelector, FieldSelector]:
        labels = LabelSelector.parse(query.get("labelSelector"))
        return labels, FieldSelector.parse(query.get("fieldSelector"), rt.field_labels)

    def _list(
        self, raw: web.BaseRequest, query: dict[str, str], path: ResourcePath, rt: ResourceType
    ) -> web.Response:
        items = self.store.list(rt, path.namespace, *self._selectors(query, rt))
        items, metadata = self._paginate(items, query)
        if rt is POD and self.vanishing:
            self._vanish_listed(items)
        if tables.wants_table(raw.headers.get("Accept", "")):
            return json_response(tables.table(rt, items, metadata, query.get("includeObject", "Metadata")))
        return json_response(self._list_body(rt, items, metadata))

    async def _watch(
        self, raw: web.BaseRequest, query: dict[str, str], path: ResourcePath, rt: ResourceType
    ) -> web.StreamResponse:
        labels, fields = self._selectors(query, rt)
        watcher = watch.Watcher(rt, path.namespace, labels, fields)
        initial = self.store.list(rt, path.namespace, labels, fields)
        timeout = float(query.get("timeoutSeconds") or 1800)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        self._mark_status(200)
        return await watch.serve(
            raw, self.watches, watcher, initial, query.get("resourceVersion"), timeout, bookmarks
        )

    def _list_body(self, rt: ResourceType, items: list[Body], metadata: dict[str, Any]) -> dict[str, Any]:
        if rt.builtin:  # built-in lists carry no apiVersion/kind per item; custom resources do
            items = [
                {key: value for key, value in item.items() if key not in ("apiVersion", "kind")}
                for item in items
            ]
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": metadata, "items": items}

    def _paginate(self, items: list[Body], query: dict[str, str]) -> tuple[list[Body], dict[str, Any]]:
        """``limit``/``continue`` as the API server does: a token to resume after the last item."""
        metadata: dict[str, Any] = {"resourceVersion": str(self.store.resource_version)}
        token = query.get("continue")
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                after, version = decoded["start"], int(decoded.get("rv", 0))
            except (ValueError, KeyError, TypeError, AttributeError):
                raise errors.bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion"
                ) from None
            if self.watches.is_compacted(version):
                raise errors.continue_expired()
            items = [item for item in items if _item_key(item) > tuple(after)]
        limit = int(query.get("limit") or 0)
        if 0 < limit < len(items):
            last = _item_key(items[limit - 1])
            payload = json.dumps({"v": "meta.k8s.io/v1", "rv": self.store.resource_version, "start": last})
            metadata["continue"] = base64.urlsafe_b64encode(payload.encode()).decode()
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return items, metadata

    def _vanish_listed(self, items: list[Body]) -> None:
        """Pods armed with ``vanish_after_list`` are in this answer, then gone before the next call."""
        listed = {(item["metadata"]["namespace"], item["metadata"]["name"]) for item in items}
        for namespace, name in listed & self.vanishing:
            self.vanishing.discard((namespace, name))
            asyncio.get_running_loop().call_soon(self._delete_if_present, POD, namespace, name)

    def _delete_if_present(self, rt: ResourceType, namespace: str, name: str) -> None:
        if self.store.get(rt, namespace, name) is not None:
            self.store.delete(rt, namespace, name, grace_period_seconds=0)

    # ---- logs ---------------------------------------------------------------------------------

    async def _serve_log(
        self, raw: web.BaseRequest, path: ResourcePath, query: dict[str, str]
    ) -> web.StreamResponse:
        assert path.namespace is not None and path.name is not None
        pod = self.store.require(POD, path.namespace, path.name)
        options = PodLogOptions.from_query(query, path.name, time.time_ns())
        container = pick_container(pod, options.container)
        run = self._log_run(pod, container, options.previous)
        response = web.StreamResponse(status=200)
        response.content_type = "text/plain"
        response.enable_chunked_encoding()
        await response.prepare(raw)
        self._mark_status(200)
        await _stream_log(response, run, options)
        return response

    def _log_run(self, pod: Body, container: str, previous: bool) -> ContainerLog:
        meta = pod["metadata"]
        runs = self.pod_logs.runs(meta["namespace"], meta["name"], container)
        if previous:
            if len(runs) < 2:
                raise errors.bad_request(
                    f'previous terminated container "{container}" in pod "{meta["name"]}" not found'
                )
            return runs[-2]
        # kubelet (pkg/kubelet/kubelet_pods.go ``validateContainerLogStatus``) answers from the
        # container's status: running or terminated has a log; waiting has none, and says why. In a
        # pod still initialising, the native sidecars already run and the finished init containers have
        # their log, while the other containers wait.
        status = pod.get("status", {})
        statuses = [*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())]
        state = next((s.get("state") or {} for s in statuses if s.get("name") == container), {})
        if status.get("phase") == "Pending" and not ("running" in state or "terminated" in state):
            reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
            raise errors.bad_request(
                f'container "{container}" in pod "{meta["name"]}" is waiting to start: {reason}'
            )
        return runs[-1]

    @staticmethod
    def _mark_status(status: int) -> None:
        entry = _current_entry.get()
        if entry is not None:
            entry.status = status

    # ---- exec ---------------------------------------------------------------------------------

    async def _serve_exec(self, raw: web.BaseRequest, path: ResourcePath) -> web.StreamResponse:
        assert path.namespace is not None and path.name is not None
        namespace, name = path.namespace, path.name
        pod = self.store.require(POD, namespace, name)
        container = pick_container(pod, raw.query.get("container"))
        command = raw.query.getall("command", [])
        if not command:
            raise errors.bad_request("you must specify at least 1 command")
        phase = pod.get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            raise errors.bad_request(
                f"cannot exec into a container in a completed pod; current phase is {phase}"
            )
        if raw.headers.get("Upgrade", "").lower() != "websocket":
            raise errors.bad_request("Upgrade request required")
        handler = self.exec_handler or self.default_exec

        async def run() -> CommandResult:
            return await container_exec.call_handler(handler, namespace, name, container, list(command))

        self._mark_status(101)
        flags = {key: raw.query.get(key, "") in ("true", "1") for key in ("stdout", "stderr", "stdin")}
        return await container_exec.serve_websocket(
            raw, run, want_stdout=flags["stdout"], want_stderr=flags["stderr"], want_stdin=flags["stdin"]
        )

    def default_exec(self, namespace: str, pod: str, container: str, command: list[str]) -> CommandResult:
        """A virt-launcher ``compute`` container: ``pidof`` and ``cat`` over the pod's process table."""
        table = self.processes.get((namespace, pod), {}) if container == "compute" else {}
        return container_exec.run_in_process_table(table, command)

    # ---- node proxy ---------------------------------------------------------------------------

    def _serve_node_proxy(self, method: str, path: ResourcePath) -> web.StreamResponse:
        assert path.name is not None
        self.store.require(NODE, None, path.name)
        if path.name in self.unreachable_nodes:
            raise ApiError(
                503,
                f"error trying to reach service: dial tcp {self._node_ip(path.name)}:"
                f"{self._kubelet_port(path.name)}: connect: connection refused",
            )
        target = "/".join(path.extra)
        if method == "GET" and target == "stats/summary":
            return json_response(self.node_summary(path.name))
        if method == "GET" and target == "healthz":
            return web.Response(text="ok", content_type="text/plain")
        return web.Response(text="404 page not found\n", status=404, content_type="text/plain")

    def node_summary(self, node: str) -> Any:
        """What the node's kubelet answers to ``GET /stats/summary`` (directly or through the proxy)."""
        if node in self.raw_summaries:
            return self.raw_summaries[node]
        return summary(node, self._running_pods(node), self.memory)

    def _node_ip(self, node: str) -> str:
        found = self.store.get(NODE, None, node) or {}
        addresses = found.get("status", {}).get("addresses", [])
        return next((a["address"] for a in addresses if a.get("type") == "InternalIP"), "0.0.0.0")

    def _kubelet_port(self, node: str) -> Any:
        found = self.store.get(NODE, None, node) or {}
        return (
            found.get("status", {}).get("daemonEndpoints", {}).get("kubeletEndpoint", {}).get("Port", 10250)
        )

    def _running_pods(self, node: str) -> list[Body]:
        """The node's running pods, from the node index (a Summary must not scan every pod of 50 nodes)."""
        found = []
        for namespace, name in sorted(self.pods_by_node.get(node, ())):
            pod = self.store.get(POD, namespace, name)
            if pod is None or pod.get("spec", {}).get("nodeName") != node:
                self.pods_by_node[node].discard((namespace, name))  # deleted or moved since
                continue
            if pod.get("status", {}).get("phase") == "Running":
                found.append(pod)
        return found

    # ---- change notifications -----------------------------------------------------------------

    def _on_change(self, rt: ResourceType, event: str, obj: Body) -> None:
        if event != "DELETED" and rt is POD and (node := obj.get("spec", {}).get("nodeName")):
            self.pods_by_node.setdefault(node, set()).add(
                (obj["metadata"]["namespace"], obj["metadata"]["name"])
            )
        if event == "DELETED" and rt is POD:
            meta = obj["metadata"]
            self.pod_logs.forget(meta["namespace"], meta["name"])
            self.processes.pop((meta["namespace"], meta["name"]), None)
            for key in [key for key in self.memory if key[:2] == (meta["namespace"], meta["name"])]:
                del self.memory[key]
        self.watches.publish(int(obj["metadata"]["resourceVersion"]), rt, event, obj)


async def _stream_log(response: web.StreamResponse, run: ContainerLog, options: PodLogOptions) -> None:
    """Write the selected lines; with ``follow``, keep writing until the run ends or the client leaves."""
    remaining = options.limit_bytes
    index = run.first_index(options.tail_lines, options.since)
    try:
        while True:
            stop = len(run)
            for chunk in run.render(index, stop, timestamps=options.timestamps, since=options.since):
                if remaining is not None:
                    chunk = chunk[:remaining]
                    remaining -= len(chunk)
                await response.write(chunk)
                if remaining == 0:
                    return
            index = stop
            if not options.follow or run.closed:
                break
            await run.wait()
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away: nothing to finish


def _grace_period(query: dict[str, str], body: bytes) -> int | None:
    """DeleteOptions.gracePeriodSeconds: from the body's DeleteOptions when one is sent, else from the
    query (apiserver endpoints/handlers/delete.go ``DeleteResource`` decodes one or the other)."""
    options = _loads(body) if body.strip() else None
    if isinstance(options, dict):
        value: Any = options.get("gracePeriodSeconds")
    else:
        value = query.get("gracePeriodSeconds")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise errors.bad_request(f"gracePeriodSeconds: invalid value {value!r}")
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(
            f'strconv.ParseInt: parsing "{value}": invalid syntax (for gracePeriodSeconds)'
        ) from None


def _from_kmock(error: kmock.KubernetesError) -> ApiError:
    """kmock's errors carry its own reasons and a traceback; answer as the API server would."""
    return errors.unknown_path() if error.status == 404 else ApiError(error.status, error.message)


def _kmock_action(method: str, path: ResourcePath, query: dict[str, str]) -> kmock.action | None:
    """The Kubernetes verb kmock's DSL filters on (``kmock.action.LIST`` and so on)."""
    if method == "GET" and query.get("watch") in ("true", "1"):
        return kmock.action.WATCH
    if path.name is None:
        return {"GET": kmock.action.LIST, "POST": kmock.action.CREATE}.get(method)
    return {"GET": kmock.action.FETCH, "PATCH": kmock.action.UPDATE, "DELETE": kmock.action.DELETE}.get(
        method
    )


def _raise(error: ApiError) -> Any:
    raise error


def _item_key(item: Body) -> tuple[str, str]:
    meta = item["metadata"]
    return meta.get("namespace", "") or "", meta["name"]


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _require_object(body: bytes, content_type: str) -> Body:
    try:
        data = yaml.safe_load(body) if "yaml" in content_type else json.loads(body)
    except (ValueError, yaml.YAMLError) as error:
        raise errors.bad_request(f"the body of the request was in an unknown format: {error}") from None
    if not isinstance(data, dict):
        raise errors.bad_request("the body of the request must be an object")
    return data


_PATCHERS: dict[str, Callable[[Any, Any], Any]] = {
    "application/json-patch+json": patches.json_patch,
    "application/merge-patch+json": patches.merge_patch,
    "application/strategic-merge-patch+json": patches.strategic_merge,
    "application/apply-patch+yaml": patches.strategic_merge,
}


def _apply_patch(rt: ResourceType, current: Body, body: bytes, content_type: str) -> Body:
    patcher = _PATCHERS.get(content_type)
    if patcher is None or (content_type == "application/strategic-merge-patch+json" and not rt.builtin):
        accepted = [media for media in _PATCHERS if rt.builtin or "strategic" not in media]
        raise ApiError(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(accepted),
        )
    if content_type == "application/apply-patch+yaml" and not rt.builtin:
        patcher = patches.merge_patch
    try:
        patch = yaml.safe_load(body) if "yaml" in content_type else json.loads(body)
    except (ValueError, yaml.YAMLError) as error:
        raise errors.bad_request(f"error decoding patch: {error}") from None
    result = patcher(current, patch)
    if not isinstance(result, dict):
        raise ApiError(422, "the patch would replace the object with a non-object")
    return result
