"""``KubeVirtCluster``: a Kubernetes API with KubeVirt on 127.0.0.1, served from its own thread.

No real API server can run on the machines this project is tested on, so the closest thing is a
real HTTP server that speaks the API: clients under test (kr8s, aiohttp, ``kubectl`` started as
a subprocess) connect to it over TCP exactly as they would to a cluster.

It runs on a dedicated thread with its own event loop so that it serves equally well a sync test,
an async test on another loop (pytest-asyncio's, which may block it on a sync call), a
subprocess, or a standalone process. Every method that touches state hops onto that loop and
waits for the result, which makes them thread-safe and keeps them callable from anywhere except
from inside a request handler (which already runs on the loop, and is handled by running inline).
"""

from __future__ import annotations

import asyncio
import base64
import random
import re
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import yaml
from aiohttp import web

from .api import KubeApi
from .builder import LAUNCHER_INIT_CONTAINERS, Builder, PodRef, VmiRef
from .container_exec import ExecHandler, ProcessEntry
from .faults import Fault, RequestRecord, compile_pattern
from .kubelets import ALL, KubeletFleet, KubeletRequest, KubeletUser
from .logs import Stamp
from .objects import DEFAULT_MEMORY, LAUNCHER_SHAPE_VERSION, VmiMemory
from .pki import CertificateAuthority, KeyPair
from .populate import Population, populate
from .resources import by_kind
from .stats import ContainerMemory
from .store import Body

T = TypeVar("T")
CALL_TIMEOUT = 60.0
DEFAULT_TOKEN = "test-token-not-a-secret"  # the kubeconfig's: the cluster admin (every kubelet path)
DEFAULT_USER = "kubevirt-test-admin"


class KubeVirtCluster:
    """A test cluster; use ``with KubeVirtCluster() as cluster:`` or ``start()``/``stop()``."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, seed: int | None = 0, kubelets: bool = True
    ) -> None:
        """``kubelets``: every node gets an HTTPS kubelet (see :mod:`.kubelets`), its certificate signed by
        this cluster's CA (``ca_pem``), which the kubeconfig names as the cluster CA."""
        self._host = host
        self._ca = CertificateAuthority() if kubelets else None
        self._port = port
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.ServerRunner | None = None
        self._api: KubeApi | None = None
        self._builder: Builder | None = None
        self._url = ""

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("the cluster is already running")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="kubevirt-test-cluster", daemon=True)
        self._thread.start()
        try:
            self._call(self._start_server())
        except BaseException:
            self._shutdown_loop()
            raise
        return self

    async def _start_server(self) -> None:
        api = KubeApi(rng=self._rng)
        await api.__aenter__()
        self._api = api
        if self._ca is not None:
            fleet = KubeletFleet(self._ca, api.node_summary, api.unreachable_nodes)
            fleet.tokens[DEFAULT_TOKEN] = DEFAULT_USER
            fleet.users[DEFAULT_USER] = KubeletUser(DEFAULT_USER, frozenset({ALL}))
            await fleet.setup()
            api.kubelets = fleet
        self._builder = Builder(api, self._rng)
        runner = web.ServerRunner(web.Server(api, handler_cancellation=True), shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"
        api.server_address = f"{host}:{port}"

    def stop(self) -> None:
        if self._thread is None:
            return
        try:
            self._call(self._stop_server())
        finally:
            self._shutdown_loop()

    async def _stop_server(self) -> None:
        if self._api is not None:
            self._api.pod_logs.close_all()  # followers and watchers finish instead of holding the shutdown
            self._api.watches.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._api is not None and self._api.kubelets is not None:
            await self._api.kubelets.close()
        if self._api is not None:
            await self._api.__aexit__(None, None, None)

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if not self._url:
            raise RuntimeError("the cluster is not started")
        return self._url

    @property
    def api(self) -> KubeApi:
        """The kmock emulator behind the server (``api.objects`` for history assertions, DSL reactions)."""
        if self._api is None:
            raise RuntimeError("the cluster is not started")
        return self._api

    @property
    def ca_pem(self) -> bytes:
        """The cluster CA (PEM): it signed every kubelet's serving certificate."""
        if self._ca is None:
            raise RuntimeError("this cluster runs no kubelets")
        return self._ca.cert_pem

    def write_kubeconfig(
        self,
        path: str | Path,
        *,
        namespace: str = "default",
        token: str | None = DEFAULT_TOKEN,
        with_ca: bool = True,
        client_cert: KeyPair | None = None,
    ) -> Path:
        """A kubeconfig for this cluster, accepted by kubectl and kr8s: the API over plain HTTP, the
        cluster CA as ``certificate-authority-data`` (what the kubelets' certificates chain to, as in a
        cluster with kubelet serverTLSBootstrap), ``token`` as the user's (None: no credentials). The
        default token is the cluster admin's; the API server does not check tokens, the kubelets do.
        ``with_ca=False``: no CA (a client then has only its system trust store). ``client_cert``: the
        user's client certificate (see ``issue_client_certificate``)."""
        cluster: dict[str, Any] = {"server": self.url}
        if self._ca is not None and with_ca:
            cluster["certificate-authority-data"] = base64.b64encode(self._ca.cert_pem).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kubevirt-test", "cluster": cluster}],
            "users": [{"name": "kubevirt-test-admin", "user": _user(token, client_cert)}],
            "contexts": [
                {
                    "name": "kubevirt-test",
                    "context": {
                        "cluster": "kubevirt-test",
                        "user": "kubevirt-test-admin",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "kubevirt-test",
            "preferences": {},
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target

    # ---- running on the server loop -------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise RuntimeError("the cluster is not started")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, loop)
        return future.result(timeout=CALL_TIMEOUT)

    def _run(self, function: Callable[[Builder], T]) -> T:
        """Run a state change on the server loop (inline when already there) and return its result."""
        builder = self._builder
        if builder is None or self._loop is None:
            raise RuntimeError("the cluster is not started")
        if threading.current_thread() is self._thread:
            return function(builder)

        async def hop() -> T:
            return function(builder)

        return self._call(hop())

    def call(self, function: Callable[[KubeApi], T]) -> T:
        """Run ``function(api)`` on the server loop: the safe way to use kmock's DSL or ``api.objects``.

        Example: ``cluster.call(lambda api: api["get /custom"] << b"hello")``.
        """
        return self._run(lambda builder: function(builder.api))

    # ---- population ---------------------------------------------------------------------------

    def add_namespace(self, name: str) -> Body:
        return self._run(lambda b: b.add_namespace(name))

    def add_node(self, name: str) -> Body:
        return self._run(lambda b: b.add_node(name))

    def add_vmi(
        self,
        namespace: str,
        name: str,
        node: str,
        phase: str = "Running",
        uid: str | None = None,
        migration_state: dict[str, Any] | None = None,
        memory: VmiMemory = DEFAULT_MEMORY,
    ) -> VmiRef:
        """A VMI; ``memory``: its memory fields and its launcher pods' (``objects.VmiMemory``)."""
        return self._run(lambda b: b.add_vmi(namespace, name, node, phase, uid, migration_state, memory))

    def add_launcher_pod(
        self,
        vmi: VmiRef,
        node: str | None = None,
        containers: Sequence[str] | None = None,
        name: str | None = None,
        init_containers: Sequence[str] = LAUNCHER_INIT_CONTAINERS,
        kubevirt_version: str = LAUNCHER_SHAPE_VERSION,
    ) -> PodRef:
        """A launcher pod as ``kubevirt_version`` renders it; see ``Builder.add_launcher_pod``."""
        return self._run(
            lambda b: b.add_launcher_pod(vmi, node, containers, name, init_containers, kubevirt_version)
        )

    def add_handler_pod(self, node: str, namespace: str = "kubevirt") -> PodRef:
        return self._run(lambda b: b.add_handler_pod(node, namespace))

    def add_kubevirt_cr(self, namespace: str = "kubevirt") -> Body:
        return self._run(lambda b: b.add_kubevirt_cr(namespace))

    def add_hco_cr(self, namespace: str = "kubevirt-hyperconverged") -> Body:
        return self._run(lambda b: b.add_hco_cr(namespace))

    def start_migration(self, vmi: VmiRef, target_node: str) -> PodRef:
        return self._run(lambda b: b.start_migration(vmi, target_node))

    def finish_migration(self, vmi: VmiRef) -> VmiRef:
        return self._run(lambda b: b.finish_migration(vmi))

    def get_object(self, api_version: str, kind: str, namespace: str | None, name: str) -> Body | None:
        """The stored object (e.g. to see what a patch did), or ``None``."""
        rt = by_kind(api_version, kind)
        return self._run(lambda b: b.store.get(rt, namespace, name))

    def launcher_pods(self, vmi: VmiRef) -> list[Body]:
        return self._run(lambda b: b.launcher_pods(vmi))

    def populate(
        self,
        namespaces: Sequence[str] = ("vms",),
        nodes: int = 3,
        vms_per_namespace: int = 5,
        log_lines: int = 20,
        *,
        handler_namespace: str = "kubevirt",
        kubevirt_version: str = LAUNCHER_SHAPE_VERSION,
    ) -> Population:
        """A realistic cluster in one call; see :func:`~.populate.populate`."""
        return self._run(
            lambda b: populate(
                b,
                namespaces,
                nodes,
                vms_per_namespace,
                log_lines,
                handler_namespace=handler_namespace,
                kubevirt_version=kubevirt_version,
            )
        )

    # ---- pods, logs, memory, exec -------------------------------------------------------------

    def delete_pod(self, namespace: str, name: str, grace_period_seconds: int | None = 0) -> Body:
        """Delete as ``DELETE`` with ``gracePeriodSeconds`` does: 0 (the default here) removes the pod
        now; a positive grace (None: the pod's terminationGracePeriodSeconds) sets deletionTimestamp and
        deletionGracePeriodSeconds, keeps the pod and its logs served, and removes it when the grace
        ends, or earlier with :meth:`finish_deletion`."""
        return self._run(lambda b: b.delete_pod(namespace, name, grace_period_seconds))

    def finish_deletion(self, namespace: str, name: str) -> None:
        """End a graceful deletion now (tests need not sleep through the grace period)."""
        self._run(lambda b: b.finish_deletion(namespace, name))

    def set_pod_initialising(self, namespace: str, name: str) -> None:
        """Stuck initialising: Pending, native sidecars running, the other containers waiting."""
        self._run(lambda b: b.set_pod_initialising(namespace, name))

    def set_pod_phase(self, namespace: str, name: str, phase: str) -> None:
        self._run(lambda b: b.set_pod_phase(namespace, name, phase))

    def restart_container(self, namespace: str, pod: str, container: str) -> int:
        return self._run(lambda b: b.restart_container(namespace, pod, container))

    def append_log(
        self, namespace: str, pod: str, container: str, text: str | bytes, time: Stamp | None = None
    ) -> int:
        """Append a line (several if it has ``\\n``) stamped ``time`` (default now; int: ns since epoch)."""
        return self._run(lambda b: b.append_lines(namespace, pod, container, [(time, text)]))

    def append_log_lines(
        self, namespace: str, pod: str, container: str, entries: Iterable[tuple[Stamp | None, str | bytes]]
    ) -> int:
        """Append many ``(time, text)`` entries in one hop (for big logs)."""
        materialised = list(entries)
        return self._run(lambda b: b.append_lines(namespace, pod, container, materialised))

    def set_container_memory(
        self,
        namespace: str,
        pod: str,
        container: str,
        rss_bytes: int,
        working_set_bytes: int,
        usage_bytes: int | None = None,
    ) -> None:
        memory = ContainerMemory.of(rss_bytes, working_set_bytes, usage_bytes)
        self._run(lambda b: b.set_memory(namespace, pod, container, memory))

    def set_processes(self, namespace: str, pod: str, table: Mapping[int, ProcessEntry]) -> None:
        """The process table of the pod's ``compute`` container: ``{pid: (name, /proc/pid/status text)}``,
        or ``{pid: (name, status, argv)}``; ``name`` is the executable's whole name (comm: its first 15
        characters)."""
        self._run(lambda b: b.set_processes(namespace, pod, dict(table)))

    def set_exec_handler(self, handler: ExecHandler | None) -> None:
        """Replace the exec emulation (``None`` restores the virt-launcher default)."""

        def assign(b: Builder) -> None:
            b.api.exec_handler = handler

        self._run(assign)

    def set_node_reachable(self, node: str, reachable: bool = True) -> None:
        """An unreachable node's kubelet does not answer: the node proxy says 503 (as the API server
        does behind a dead kubelet), and a direct request waits for an answer that never comes."""

        def assign(b: Builder) -> None:
            b.store.require(by_kind("v1", "Node"), None, node)
            (b.api.unreachable_nodes.discard if reachable else b.api.unreachable_nodes.add)(node)

        self._run(assign)

    # ---- kubelets ------------------------------------------------------------------------------

    def _fleet(self) -> KubeletFleet:
        fleet = self.api.kubelets
        if fleet is None:
            raise RuntimeError("this cluster runs no kubelets")
        return fleet

    def allow_kubelet_token(self, token: str, user: str, subresources: Iterable[str]) -> None:
        """Let ``token`` (authenticating as ``user``) ``get`` these node subresources (``stats``,
        ``proxy``, ``*``...) on every kubelet, as RBAC would; an empty set authenticates but allows
        nothing (403)."""
        self.allow_kubelet_user(user, subresources)

        def assign(b: Builder) -> None:
            self._fleet().tokens[token] = user

        self._run(assign)

    def allow_kubelet_user(self, user: str, subresources: Iterable[str]) -> None:
        """Let ``user`` ``get`` these node subresources on every kubelet (``*``: everything)."""
        allowed = KubeletUser(user, frozenset(subresources))

        def assign(b: Builder) -> None:
            self._fleet().users[user] = allowed

        self._run(assign)

    def issue_client_certificate(self, user: str, groups: tuple[str, ...] = ()) -> KeyPair:
        """A client certificate of the cluster CA for ``user`` (kubelets authenticate it by its CN)."""
        if self._ca is None:
            raise RuntimeError("this cluster runs no kubelets")
        return self._ca.issue_client(user, groups)

    def use_own_kubelet_ca(self, node: str) -> bytes:
        """``node``'s kubelet serves a certificate of a CA of its own (kubelet's self-signed default),
        not the cluster CA's; returns that CA (PEM)."""
        ca = CertificateAuthority(f"{node}-ca")
        self._run(lambda b: self._fleet().issue(node, ca))
        return ca.cert_pem

    def kubelet_port(self, node: str) -> int:
        return self._run(lambda b: self._fleet().ports[node])

    def kubelet_requests(self) -> list[KubeletRequest]:
        """Requests the kubelets answered, in order (not the API server's: see ``requests``)."""
        return self._run(lambda b: list(self._fleet().requests))

    def clear_kubelet_requests(self) -> None:
        self._run(lambda b: self._fleet().requests.clear())

    def set_raw_summary(self, node: str, document: Any) -> None:
        """Serve ``document`` as the node's Summary, whatever its shape (``None``: the real one again)."""

        def assign(b: Builder) -> None:
            if document is None:
                b.api.raw_summaries.pop(node, None)
            else:
                b.api.raw_summaries[node] = document

        self._run(assign)

    # ---- journal and faults -------------------------------------------------------------------

    def requests(self) -> list[RequestRecord]:
        return self.api.journal.records()

    def clear_requests(self) -> None:
        self.api.journal.clear()

    def inject(
        self,
        path_regex: str | re.Pattern[str],
        status: int = 500,
        *,
        method: str | None = None,
        times: int | None = 1,
        query_regex: str | None = None,
    ) -> Fault:
        """The next ``times`` matching requests (None: all) get ``status`` and a ``Status`` body; with
        ``query_regex``, only requests whose query string matches it too."""
        query = compile_pattern(query_regex) if query_regex is not None else None
        return self.api.faults.add(
            Fault("status", compile_pattern(path_regex), method, status=status, remaining=times, query=query)
        )

    def inject_timeout(
        self,
        path_regex: str | re.Pattern[str],
        seconds: float,
        *,
        method: str | None = None,
        times: int | None = 1,
        query_regex: str | None = None,
    ) -> Fault:
        """The next matching requests hang ``seconds`` before being answered normally; with
        ``query_regex``, only requests whose query string matches it too."""
        query = compile_pattern(query_regex) if query_regex is not None else None
        return self.api.faults.add(
            Fault(
                "timeout", compile_pattern(path_regex), method, seconds=seconds, remaining=times, query=query
            )
        )

    def inject_drop(
        self, path_regex: str | re.Pattern[str], *, method: str | None = None, times: int | None = 1
    ) -> Fault:
        """The next matching requests see their TCP connection closed without a response."""
        return self.api.faults.add(Fault("drop", compile_pattern(path_regex), method, remaining=times))

    def clear_faults(self) -> None:
        self.api.faults.clear()

    # ---- watches --------------------------------------------------------------------------------

    def drop_watches(self) -> int:
        """Cut the TCP connection of every open watch (an API server restart); returns how many."""
        return self._run(lambda b: b.api.watches.drop_all())

    def compact(self, through: int | None = None) -> int:
        """Forget changes up to resourceVersion ``through`` (default: all so far), as etcd compaction
        does: a watch from an older version gets a 410 ERROR event, an older list continue token 410.
        Returns the compacted version."""
        return self._run(lambda b: b.api.watches.compact(through))

    def set_bookmark_period(self, seconds: float) -> None:
        """How often watches with ``allowWatchBookmarks=true`` get a BOOKMARK (kube-apiserver: 60 s)."""

        def assign(b: Builder) -> None:
            b.api.watches.bookmark_period = seconds

        self._run(assign)

    @property
    def resource_version(self) -> int:
        """The newest resourceVersion the cluster has given out."""
        return self._run(lambda b: b.store.resource_version)

    def vanish_after_list(self, namespace: str, pod: str) -> None:
        """The pod appears in the next pod list that includes it, and is deleted right after."""
        self._run(lambda b: b.api.vanishing.add((namespace, pod)))


def _user(token: str | None, client_cert: KeyPair | None) -> dict[str, str]:
    """A kubeconfig user: a token, a client certificate (inline, base64), both, or nothing."""
    user = {"token": token} if token else {}
    if client_cert is not None:
        user["client-certificate-data"] = base64.b64encode(client_cert.cert_pem).decode()
        user["client-key-data"] = base64.b64encode(client_cert.key_pem).decode()
    return user
