"""All HTTP to the Kubernetes API goes through ``KubeClient``: typed calls, retries, timeouts.

kr8s provides what is tedious and security-sensitive to get right (kubeconfig, in-cluster service
account, TLS, token refresh) and raw requests (``call_api``, ``open_websocket``); this layer adds what
the components need on top, and nothing more:

* a typed answer for each question a component asks (the VMIs of some namespaces, the launcher pods
  of a VMI, the handler pod of a node, a log stream, a node's kubelet summary, an exec);
* the same failure contract for every call: a ``KubeError``, after retries with exponential backoff and
  jitter on connection errors, timeouts, 429 and 5xx, and no retry on other 4xx;
* a timeout on every call.

Log streams retry only until the response starts: once lines have been handed to the caller, a retry
would repeat them, so a stream cut midway raises and the caller resumes from the last timestamp it
kept (that is how logs-collector stays duplicate-free).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, TypeVar, Unpack

import httpx
import httpx_ws
import kr8s.asyncio
import yaml  # kr8s's own kubeconfig reader: a file that is not YAML raises its error
from kr8s import APITimeoutError, ServerError

from ..config import ALL_NAMESPACES, ConfigError
from ..settings import KubeSettings
from .errors import ExecFailed, KubeError, KubeNotFound, KubeRejected, KubeUnavailable, LineTooLong
from .exec_protocol import SUBPROTOCOLS, ExecStream
from .models import JSON, ApiCredentials, ExecResult, Pod, Vmi, format_time, label_selector
from .retry import RetryPolicy, is_retryable_status, parse_retry_after
from .watch import ObjectCache

log = logging.getLogger(__name__)
T = TypeVar("T")

KUBEVIRT_API = "/apis/kubevirt.io/v1"
HCO_API = "/apis/hco.kubevirt.io/v1beta1"
LAUNCHER_LABELS = {"kubevirt.io": "virt-launcher"}
HANDLER_LABELS = {"kubevirt.io": "virt-handler"}
CREATED_BY_LABEL = "kubevirt.io/created-by"
VM_NAME_LABEL = "vm.kubevirt.io/name"  # KubeVirt's DeprecatedVirtualMachineNameLabel
LIST_PAGE_SIZE = 500
# A list whose continue token keeps expiring (the server compacts faster than we page) is restarted
# this many times before the failure is reported.
LIST_RESTARTS = 3
# The longest watch line accepted: an object is at most 1.5 MiB in etcd (its default request limit), so
# anything beyond a few MiB is not an event; it ends the watch (and the cache lists again).
MAX_WATCH_LINE_BYTES = 4 * 1024 * 1024
GONE = 410


class LogOptions(TypedDict, total=False):
    """The keyword options of a log request (see :meth:`KubeClient.stream_log_chunks`)."""

    since_time: datetime | None
    previous: bool
    timestamps: bool
    follow: bool
    tail_lines: int | None


class _Retryable(Exception):
    def __init__(self, error: KubeError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


_NOT_A_KUBECONFIG = (TypeError, KeyError, AttributeError, IndexError, yaml.YAMLError)


class _NotAKubeconfig(KubeRejected):
    """KUBECONFIG names a file that is not a kubeconfig (``/etc/passwd``, a YAML syntax error)."""


class KubeClient:
    """The components' only door to the API. Create with ``await KubeClient.connect(settings)``."""

    def __init__(
        self, api: Any, settings: KubeSettings, policy: RetryPolicy | None = None, seed: int | None = None
    ) -> None:
        self._api = api
        self._timeout = settings.kube_request_timeout_secs
        self._policy = policy or RetryPolicy(retries=settings.kube_retries)
        self._rng = random.Random(seed)
        self.calls = 0  # requests made, retries included: benchmarks report it
        self.bytes_read = 0  # bodies read (JSON answers, logs, watch streams): benchmarks report it

    @classmethod
    async def connect(cls, settings: KubeSettings, policy: RetryPolicy | None = None) -> KubeClient:
        """Load credentials (explicit URL, kubeconfig, or in-cluster) and check the server answers."""

        async def open_api() -> Any:
            try:
                return await kr8s.asyncio.api(
                    url=settings.kube_api_url,
                    kubeconfig=str(settings.kubeconfig) if settings.kubeconfig else None,
                    context=settings.kube_context,
                )
            except ValueError as exc:  # kr8s: no kubeconfig and no service account
                raise KubeRejected(f"no Kubernetes credentials: {exc}") from None
            except _NOT_A_KUBECONFIG as exc:  # kr8s walks the parsed file without checking its shape
                if settings.kubeconfig is None:
                    raise
                reason = " ".join(str(exc).split())  # one line: a YAML error spans several
                raise _NotAKubeconfig(f"{settings.kubeconfig} is not a kubeconfig file ({reason})") from None

        client = cls(None, settings, policy)
        try:
            client._api = await client._with_retries("connect", lambda: client._attempt(open_api))
        except _NotAKubeconfig as exc:  # a setting that cannot work: exit code 2, not a retried outage
            raise ConfigError("KUBECONFIG", str(exc)) from None
        return client

    async def close(self) -> None:
        session = getattr(self._api, "_session", None)
        if session is not None:
            with contextlib.suppress(Exception):
                await session.aclose()

    # --- the questions components ask ----------------------------------------------------------------

    async def list_vmis(self, namespaces: Sequence[str]) -> list[Vmi]:
        """The VirtualMachineInstances of ``namespaces`` (``("*",)``: of every namespace)."""
        items = await self._list_in(namespaces, KUBEVIRT_API, "virtualmachineinstances")
        return [Vmi.from_json(item) for item in items]

    async def list_launcher_pods(self, namespaces: Sequence[str]) -> list[Pod]:
        """Every virt-launcher pod of ``namespaces``: one request per namespace, for many VMs at once."""
        items = await self._list_in(namespaces, "/api/v1", "pods", labels=LAUNCHER_LABELS)
        return [Pod.from_json(item) for item in items]

    async def launcher_pods(self, vmi: Vmi) -> list[Pod]:
        """The virt-launcher pod(s) of one VMI: two while it migrates, the active one first."""
        pods = await self.list_pods(vmi.namespace, {**LAUNCHER_LABELS, CREATED_BY_LABEL: vmi.uid})
        if not pods:  # a pod whose created-by label was removed: see match_launcher_pods
            pods = await self.list_pods(
                vmi.namespace, {**LAUNCHER_LABELS, VM_NAME_LABEL: vmi.launcher_hostname}
            )
        return match_launcher_pods(vmi, pods)

    async def handler_pod(self, node: str, namespace: str) -> Pod | None:
        """The virt-handler pod on ``node`` in the KubeVirt (or HCO) namespace, if one runs there."""
        pods = await self.list_pods(namespace, HANDLER_LABELS, node=node)
        running = [pod for pod in pods if pod.phase == "Running"] or pods
        return running[0] if running else None

    async def handler_pods(self, namespace: str) -> dict[str, Pod]:
        """The virt-handler pod of every node, in one request."""
        return handlers_by_node(await self.list_pods(namespace, HANDLER_LABELS))

    # --- caches kept from watches (see kube/watch.py) ----------------------------------------------------

    def vmi_cache(self, namespaces: Sequence[str], **options: Any) -> ObjectCache:
        """The VMIs of ``namespaces`` (``("*",)``: all), kept from a list and a watch."""
        paths = _collection_paths(namespaces, KUBEVIRT_API, "virtualmachineinstances")
        return ObjectCache(self, "virtualmachineinstances", paths, **options)

    def launcher_pod_cache(
        self, namespaces: Sequence[str], node: str | None = None, **options: Any
    ) -> ObjectCache:
        """The virt-launcher pods of ``namespaces`` (with ``node``: on that node), kept from a list and a
        watch."""
        paths = _collection_paths(namespaces, "/api/v1", "pods")
        params = {"labelSelector": label_selector(LAUNCHER_LABELS)}
        if node:
            params["fieldSelector"] = f"spec.nodeName={node}"
        return ObjectCache(self, "launcher pods", paths, params, **options)

    def handler_pod_cache(self, namespace: str, **options: Any) -> ObjectCache:
        """The virt-handler pods of the KubeVirt (or HCO) namespace, kept from a list and a watch."""
        paths = _collection_paths((namespace,), "/api/v1", "pods")
        params = {"labelSelector": label_selector(HANDLER_LABELS)}
        return ObjectCache(self, "handler pods", paths, params, **options)

    async def list_objects(
        self,
        path: str,
        params: dict[str, str] | None = None,
        keep: Callable[[JSON], JSON] | None = None,
    ) -> tuple[list[JSON], str]:
        """Every item of the collection at ``path`` and the list's ``resourceVersion``, page by page;
        ``keep``: what to keep of each item, applied as each page arrives.

        Pages of ``LIST_PAGE_SIZE`` (10,000 pods in one answer is tens of MB held at once). A continue
        token is a snapshot at the first page's version; once the server has compacted that version it
        answers 410 and the list starts again from the first page (client-go tools/pager/pager.go
        ``List`` does the same, as one unpaginated list, when ``FullListIfExpired``).
        """
        restarts = 0
        while True:
            query = {**(params or {}), "limit": str(LIST_PAGE_SIZE)}
            items: list[JSON] = []
            try:
                while True:
                    page = await self.get_json(path, query)
                    if not isinstance(page, dict):
                        raise KubeError(f"GET {path}: the list answer is not an object")
                    found = page.get("items")
                    objects = (
                        [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []
                    )
                    items += [keep(item) for item in objects] if keep is not None else objects
                    meta = page.get("metadata")
                    meta = meta if isinstance(meta, dict) else {}
                    token = meta.get("continue")
                    if not token or not isinstance(token, str):
                        return items, str(meta.get("resourceVersion") or "")
                    query["continue"] = token
            except KubeRejected as exc:
                if exc.status != GONE or "continue" not in query or restarts >= LIST_RESTARTS:
                    raise
                restarts += 1
                log.info(
                    "list continue token expired, listing again", extra={"path": path, "error": str(exc)}
                )

    @contextlib.asynccontextmanager
    async def watch_lines(
        self,
        path: str,
        params: dict[str, str],
        timeout_seconds: float,
        max_line_bytes: int = MAX_WATCH_LINE_BYTES,
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """A watch request (``params`` carry ``watch=true`` ...) as its lines, read as they arrive.

        Opening is retried like any call (a 410 is not: the caller lists again). Once lines flow, a
        failure raises ``KubeError``, as does a line longer than ``max_line_bytes``. The read timeout
        outlasts the server's own ``timeoutSeconds``, so a server that goes silent is noticed.
        """
        read = timeout_seconds + self._timeout
        async with self._streamed(f"watch {path}", path, params, read) as response:
            yield _bounded_lines(self._counted(_chunks(response, decoded=True)), max_line_bytes)

    async def list_pods(self, namespace: str, labels: dict[str, str], node: str | None = None) -> list[Pod]:
        fields = f"spec.nodeName={node}" if node else None
        items = await self._list_in((namespace,), "/api/v1", "pods", labels=labels, fields=fields)
        return [Pod.from_json(item) for item in items]

    async def get_pod(self, namespace: str, name: str) -> Pod:
        return Pod.from_json(await self.get_json(f"/api/v1/namespaces/{namespace}/pods/{name}"))

    @contextlib.asynccontextmanager
    async def stream_log(
        self, namespace: str, pod: str, container: str, **options: Unpack[LogOptions]
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """A container's log as raw lines (bytes, no newline), each prefixed by its RFC3339Nano time.

        ``options`` are those of :meth:`stream_log_chunks`. ``since_time`` is sent at second precision
        (what the API server forwards to kubelet anyway), so the first lines may be older than it:
        callers that need an exact boundary compare timestamps. Opening is retried; a failure while
        reading raises ``KubeError`` (see the module docstring).
        """
        async with self.stream_log_chunks(namespace, pod, container, **options) as chunks:
            yield _lines(chunks)

    @contextlib.asynccontextmanager
    async def stream_log_chunks(
        self,
        namespace: str,
        pod: str,
        container: str,
        *,
        since_time: datetime | None = None,
        previous: bool = False,
        timestamps: bool = True,
        follow: bool = False,
        tail_lines: int | None = None,
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """Like ``stream_log``, but the body as it arrives: chunks that may cut lines anywhere.

        For callers that move hundreds of megabytes and find line boundaries themselves, in bulk.
        """
        params: dict[str, str] = {"container": container}
        if timestamps:
            params["timestamps"] = "true"
        if since_time is not None:
            params["sinceTime"] = format_time(since_time)
        if previous:
            params["previous"] = "true"
        if follow:
            params["follow"] = "true"
        if tail_lines is not None:
            params["tailLines"] = str(tail_lines)
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        what = f"logs {namespace}/{pod}/{container}"
        async with self._streamed(what, path, params, None if follow else self._timeout) as response:
            yield self._counted(_chunks(response))

    @contextlib.asynccontextmanager
    async def _streamed(
        self, what: str, path: str, params: dict[str, str], read_timeout: float | None
    ) -> AsyncIterator[httpx.Response]:
        """A GET whose body is read as it arrives; opening it is retried like any call."""
        async with contextlib.AsyncExitStack() as stack:

            async def open_stream() -> httpx.Response:
                return await stack.enter_async_context(
                    self._call_api(
                        "GET",
                        path,
                        params=params,
                        stream=True,
                        timeout=httpx.Timeout(self._timeout, read=read_timeout),
                    )
                )

            yield await self._with_retries(what, lambda: self._attempt(open_stream))

    async def kubevirt_crs(self, namespace: str) -> list[JSON]:
        """The KubeVirt custom resources of ``namespace`` (normally one, ``kubevirt``)."""
        return await self._list_in((namespace,), KUBEVIRT_API, "kubevirts")

    async def patch_kubevirt_cr(self, namespace: str, name: str, patch: JSON) -> JSON:
        return await self.patch_json(f"{KUBEVIRT_API}/namespaces/{namespace}/kubevirts/{name}", patch)

    async def hyperconverged_crs(self, namespace: str) -> list[JSON]:
        """The HyperConverged custom resources of ``namespace`` (HCO deploys and owns KubeVirt's CR)."""
        return await self._list_in((namespace,), HCO_API, "hyperconvergeds")

    async def patch_hyperconverged_cr(self, namespace: str, name: str, patch: JSON) -> JSON:
        return await self.patch_json(f"{HCO_API}/namespaces/{namespace}/hyperconvergeds/{name}", patch)

    async def node_proxy_get(self, node: str, path: str) -> JSON:
        """GET a path of the kubelet on ``node`` through the API server's node proxy."""
        return await self.get_json(f"/api/v1/nodes/{node}/proxy/{path.lstrip('/')}")

    async def stats_summary(self, node: str) -> JSON:
        """kubelet's Summary API: memory of every container on the node, in one request."""
        return await self.node_proxy_get(node, "stats/summary")

    async def list_nodes(self) -> list[JSON]:
        """Every Node object, as the API returns it (``kubelet.py`` reads addresses and ports from it)."""
        return await self._list_in((ALL_NAMESPACES,), "/api/v1", "nodes")

    async def credentials(self, reload: bool = False) -> ApiCredentials:
        """Who we are to the API (kubeconfig or ServiceAccount), to be the same to the kubelets.

        ``reload``: read them again first (a ServiceAccount token is rotated in its file).
        """
        auth = self._api.auth
        if reload:
            await auth.reauthenticate()

        def path(value: object) -> Path | None:
            return Path(str(value)) if value else None

        return ApiCredentials(
            token=auth.token or None,
            client_cert=path(auth.client_cert_file),
            client_key=path(auth.client_key_file),
            ca_file=path(auth.server_ca_file),
        )

    async def exec(
        self,
        namespace: str,
        pod: str,
        container: str,
        command: Sequence[str],
        *,
        max_output_bytes: int = 4 * 1024 * 1024,
    ) -> ExecResult:
        """Run ``command`` in a container and wait for it; a non-zero exit is a result, not an error."""
        what = f"exec {namespace}/{pod}/{container}"
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/exec"
        params = [("command", part) for part in command]
        params += [("container", container), ("stdout", "true"), ("stderr", "true")]

        async def run() -> ExecResult:
            version, base, url = _split_path(path)
            self.calls += 1
            stream = ExecStream(max_output_bytes)
            async with self._api.open_websocket(
                version=version,
                base=base,
                url=url,
                params=params,
                subprotocols=list(SUBPROTOCOLS),
                max_message_size_bytes=max_output_bytes + 1,
            ) as socket:
                while not stream.feed(await socket.receive_bytes()):
                    pass
            return stream.result()

        return await self._with_retries(what, lambda: self._attempt(run))

    async def get_json(self, path: str, params: dict[str, str] | None = None) -> JSON:
        async def get() -> JSON:
            async with self._call_api("GET", path, params=params) as response:
                body: JSON = response.json()
                self.bytes_read += len(response.content)
                return body

        return await self._with_retries(f"GET {path}", lambda: self._attempt(get))

    async def patch_json(
        self, path: str, patch: JSON, content_type: str = "application/merge-patch+json"
    ) -> JSON:
        async def send() -> JSON:
            async with self._call_api(
                "PATCH", path, json=patch, headers={"Content-Type": content_type}
            ) as response:
                body: JSON = response.json()
                return body

        return await self._with_retries(f"PATCH {path}", lambda: self._attempt(send))

    # --- plumbing -------------------------------------------------------------------------------------

    async def _list_in(
        self,
        namespaces: Sequence[str],
        api: str,
        resource: str,
        labels: dict[str, str] | None = None,
        fields: str | None = None,
    ) -> list[JSON]:
        items: list[JSON] = []
        for path in _collection_paths(namespaces, api, resource):
            items += await self._list(path, labels, fields)
        return items

    async def _list(self, path: str, labels: dict[str, str] | None, fields: str | None) -> list[JSON]:
        """All items of a list, page by page (a continue token keeps pages consistent)."""
        params: dict[str, str] = {}
        if labels:
            params["labelSelector"] = label_selector(labels)
        if fields:
            params["fieldSelector"] = fields
        try:
            items, _ = await self.list_objects(path, params)
        except KubeNotFound:  # a namespace that does not exist (yet) has no objects
            return []
        return items

    async def _counted(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.bytes_read += len(chunk)
            yield chunk

    @contextlib.asynccontextmanager
    async def _call_api(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        version, base, url = _split_path(path)
        kwargs.setdefault("timeout", self._timeout)
        self.calls += 1
        async with self._api.call_api(method, version=version, base=base, url=url, **kwargs) as response:
            yield response

    async def _attempt(self, call: Callable[[], Awaitable[T]]) -> T:
        """One try, bounded by the request timeout, with its failure classified."""
        try:
            async with asyncio.timeout(self._timeout):
                return await call()
        except (KubeError, _Retryable):
            raise
        except Exception as exc:
            raise classify(exc) from exc

    async def _with_retries(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` (raising only ``KubeError`` or ``_Retryable``) until it succeeds or gives up."""
        number = 0
        while True:
            try:
                return await attempt()
            except _Retryable as retryable:
                number += 1
                if number > self._policy.retries:
                    raise retryable.error from None
                delay = self._policy.delay(number, self._rng, retryable.retry_after)
                log.info(
                    "API call failed, retrying",
                    extra={
                        "call": what,
                        "error": str(retryable.error),
                        "retry": number,
                        "delay_s": round(delay, 3),
                    },
                )
                await asyncio.sleep(delay)


def _collection_paths(namespaces: Sequence[str], api: str, resource: str) -> list[str]:
    if ALL_NAMESPACES in namespaces:
        return [f"{api}/{resource}"]
    return [f"{api}/namespaces/{namespace}/{resource}" for namespace in namespaces]


async def _chunks(response: httpx.Response, decoded: bool = False) -> AsyncIterator[bytes]:
    """The body as it arrives (``decoded``: with its content encoding undone); a failure while
    reading becomes a ``KubeError``."""
    try:
        async for chunk in response.aiter_bytes() if decoded else response.aiter_raw():
            yield chunk
    except Exception as exc:
        error = classify(exc)
        raise (error.error if isinstance(error, _Retryable) else error) from exc


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    pending = b""
    async for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line
    if pending:
        yield pending


async def _bounded_lines(chunks: AsyncIterator[bytes], max_line_bytes: int) -> AsyncIterator[bytes]:
    """Lines of at most ``max_line_bytes``: a longer one raises ``KubeError`` instead of filling memory."""
    pending = bytearray()
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if len(pending) + end - start > max_line_bytes:
                raise LineTooLong(f"a line longer than {max_line_bytes} bytes")
            pending += chunk[start:end]
            yield bytes(pending)
            pending.clear()
            start = end + 1
        pending += chunk[start:]
        if len(pending) > max_line_bytes:
            raise LineTooLong(f"a line longer than {max_line_bytes} bytes")
    if pending:
        yield bytes(pending)


def handlers_by_node(pods: Iterable[Pod]) -> dict[str, Pod]:
    """The virt-handler pod of each node (a Running one when the DaemonSet is replacing it)."""
    by_node: dict[str, Pod] = {}
    for pod in pods:
        if pod.node and (pod.node not in by_node or pod.phase == "Running"):
            by_node[pod.node] = pod
    return by_node


def match_launcher_pods(vmi: Vmi, pods: Iterable[Pod]) -> list[Pod]:
    """The launcher pods of ``vmi`` among ``pods``: its namespace, and its UID in the created-by label.

    KubeVirt's virt-controller (pkg/virt-controller/services/template.go, ``podLabels`` and the pod it
    renders, from v0.10 through v1.7) gives every launcher pod ``kubevirt.io/created-by=<VMI UID>`` and a
    controller owner reference to the VMI. ``vm.kubevirt.io/name`` holds ``SanitizeHostname`` (the name
    cut at its first dot, or ``spec.hostname``), which VMIs can share, so it is only a fallback for a pod
    whose created-by label was edited away, and only with an owner reference to this very VMI.

    The pod on the VMI's node comes first: during a live migration that is the source, still running
    the guest; the target follows. Creation time (second precision) and name break ties.
    """
    in_namespace = [pod for pod in pods if pod.namespace == vmi.namespace]
    mine = [pod for pod in in_namespace if pod.labels.get(CREATED_BY_LABEL) == vmi.uid]
    if not mine:
        mine = [
            pod
            for pod in in_namespace
            if CREATED_BY_LABEL not in pod.labels
            and pod.labels.get(VM_NAME_LABEL) == vmi.launcher_hostname
            and ("VirtualMachineInstance", vmi.uid) in pod.owners
        ]
    return sorted(mine, key=lambda pod: (pod.node != vmi.node, pod.created or _EPOCH, pod.name))


_EPOCH = datetime.fromtimestamp(0, UTC)


def classify(exc: BaseException) -> KubeError | _Retryable:
    """Map a transport or kr8s exception to our contract: final error, or worth a retry."""
    if isinstance(exc, ServerError) and exc.response is not None:
        return _from_status(exc.response.status_code, str(exc), exc.response.headers.get("Retry-After"))
    if isinstance(exc, httpx_ws.WebSocketUpgradeError):
        response = exc.response
        message = f"exec upgrade refused: {response.status_code} {_status_message(response)}"
        return _from_status(response.status_code, message, response.headers.get("Retry-After"))
    if isinstance(exc, (TimeoutError, APITimeoutError, httpx.TimeoutException)):
        return _Retryable(KubeUnavailable(f"timed out: {type(exc).__name__}"))
    if isinstance(exc, (httpx.TransportError, httpx_ws.WebSocketNetworkError, httpx_ws.WebSocketDisconnect)):
        return _Retryable(KubeUnavailable(f"connection failed: {type(exc).__name__}: {exc}"))
    if isinstance(exc, httpx_ws.HTTPXWSException):
        return ExecFailed(f"exec failed: {type(exc).__name__}: {exc}")
    if isinstance(exc, ServerError):
        return KubeError(str(exc))
    return KubeError(f"{type(exc).__name__}: {exc}")


def _from_status(status: int, message: str, retry_after: str | None) -> KubeError | _Retryable:
    if status == 404:
        return KubeNotFound(message, status)
    if is_retryable_status(status):
        return _Retryable(KubeUnavailable(message, status), parse_retry_after(retry_after))
    return KubeRejected(message, status)


def _status_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", ""))
    except Exception:
        return ""


def _split_path(path: str) -> tuple[str, str, str]:
    """``/api/v1/x`` -> ("v1", "/api", "x"); ``/apis/g/v/x`` -> ("g/v", "/apis", "x"), as kr8s wants them."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        return parts[1], "/api", "/".join(parts[2:])
    if parts[0] == "apis":
        return "/".join(parts[1:3]), "/apis", "/".join(parts[3:])
    raise ValueError(f"not an API path: {path}")
