"""A node's kubelet Summary, read directly from the kubelet (``get nodes/stats``) or through the proxy.

Why direct by default: the API server's node proxy (``/api/v1/nodes/<node>/proxy/...``) needs ``get
nodes/proxy``, and the kubelet authorizes everything it does not map to a narrower subresource as
``nodes/proxy``, exec over a WebSocket GET included (kubernetes#83465): a collector holding it could run
commands in every pod. The kubelet authorizes ``/stats/*`` as ``get nodes/stats``, read-only
(kubernetes pkg/kubelet/server/auth.go, ``GetRequestAttributes``). Reading kubelets directly is what
metrics-server does (pkg/scraper/client/resource/client.go, ``GetMetrics``), and it also spares the API
server one proxied request per node per poll.

As metrics-server does, the kubelet's address is the Node's first ``status.addresses`` entry of the
first type in KUBELET_ADDRESS_TYPES (pkg/utils/address_resolver.go, ``NodeAddress``), its port
``status.daemonEndpoints.kubeletEndpoint.Port``; the client presents the API client's own credentials
(bearer token, or client certificate) and verifies the kubelet's serving certificate against
KUBELET_CA_FILE or the cluster CA, unless KUBELET_INSECURE_TLS (cmd/metrics-server/app/options/
kubelet_client.go, ``Config``: the same rest config, its CA replaced or verification turned off).

Every failure is a :class:`KubeletUnreadable` with a short ``reason`` (a metric label) and a message that
says what to do. Nodes come from one list, refreshed every few minutes or when a node is not in it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

from ..config import ConfigError
from ..settings import KubeletSettings, KubeSettings
from .client import KubeClient
from .errors import KubeError
from .models import JSON, ApiCredentials

log = logging.getLogger(__name__)

SUMMARY_PATH = "/stats/summary"
MAX_SUMMARY_BYTES = 64 * 1024 * 1024  # a node of 110 pods answers well under 1 MiB
NODES_MAX_AGE_S = 300.0  # a node's address or port changes rarely: re-list every few minutes
NODES_MIN_RELIST_S = 10.0  # a node not in the list re-lists at most this often
# Connections kept between polls: no new TLS handshake per node per poll (polls are 5 s by default).
KEEPALIVE_S = 60.0

# Reasons (the ``reason`` label of memstat's per-node failure counter).
TLS = "tls"
UNAUTHORIZED = "unauthorized"
FORBIDDEN = "forbidden"
TIMEOUT = "timeout"
REFUSED = "refused"
UNREACHABLE = "unreachable"
HTTP_ERROR = "http_error"
BAD_ANSWER = "bad_answer"
BAD_NODE = "bad_node"
NODE_UNKNOWN = "node_unknown"


class KubeletUnreadable(KubeError):
    """A node's Summary could not be read; ``reason`` is one of the constants above."""

    def __init__(self, reason: str, message: str, status: int | None = None) -> None:
        super().__init__(message, status)
        self.reason = reason


class SummaryReader(Protocol):
    """Reads one node's kubelet Summary (``KubeletUnreadable`` when it cannot)."""

    async def summary(self, node: str) -> JSON: ...

    async def close(self) -> None: ...


# --- where a node's kubelet listens (pure) ----------------------------------------------------------------

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
)


@dataclass(frozen=True)
class KubeletEndpoint:
    host: str  # an IP address or a DNS name, checked
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}{SUMMARY_PATH}"


def _valid_host(address: object) -> str | None:
    """``address`` if it is an IP address or a DNS name, else None (a path, ``@``, a newline...)."""
    if not isinstance(address, str) or "%" in address:  # an IPv6 zone is local to a host: not ours
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address if _HOSTNAME.match(address.lower()) else None


def kubelet_endpoint(node: object, address_types: Sequence[str]) -> KubeletEndpoint:
    """Where ``node``'s kubelet listens; ``KubeletUnreadable(BAD_NODE)`` when the object does not say.

    The Node object is outside input: an address that is not an IP or a host name is passed over
    (never put in a URL), and a missing or out-of-range port fails this node only.
    """
    status = node.get("status") if isinstance(node, dict) else None
    status = status if isinstance(status, dict) else {}
    entries = status.get("addresses")
    entries = [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []
    # metrics-server's order: the first type that has an address, and its first address of that type
    candidates = [
        (kind, e.get("address")) for kind in address_types for e in entries if e.get("type") == kind
    ]
    host, rejected = None, []
    for kind, address in candidates:
        host = _valid_host(address)
        if host is not None:
            break
        rejected.append(f"{kind} {_shown(address)}")
    if host is None:
        wanted = ",".join(address_types)
        why = f" (not an IP address or host name: {'; '.join(rejected)})" if rejected else ""
        raise KubeletUnreadable(BAD_NODE, f"the Node has no usable address of the types {wanted}{why}")
    endpoints = status.get("daemonEndpoints")
    kubelet = endpoints.get("kubeletEndpoint") if isinstance(endpoints, dict) else None
    port = kubelet.get("Port") if isinstance(kubelet, dict) else None
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise KubeletUnreadable(
            BAD_NODE, f"the Node's status.daemonEndpoints.kubeletEndpoint.Port is not a port: {_shown(port)}"
        )
    return KubeletEndpoint(host, port)


def _shown(value: object, limit: int = 80) -> str:
    """A value of outside input as one short, printable piece of a log line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _body_text(body: bytes, limit: int = 300) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    text = "".join(char for char in text if char.isprintable())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the nodes ----------------------------------------------------------------------------------------------


class NodeDirectory:
    """The Node objects by name, from one list: re-listed when older than ``max_age`` seconds, or
    when a node is not in it (at most every ``min_relist`` seconds; concurrent askers share a list)."""

    def __init__(
        self,
        client: KubeClient,
        max_age: float = NODES_MAX_AGE_S,
        min_relist: float = NODES_MIN_RELIST_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._max_age = max_age
        self._min_relist = min_relist
        self._clock = clock
        self._nodes: dict[str, JSON] = {}
        self._listed: float | None = None  # when the last good list was taken
        self._tried: float | None = None  # when the last list was tried, good or not
        self._lock = asyncio.Lock()
        self.lists = 0

    async def get(self, name: str) -> JSON:
        if self._lock.locked() or self._due(name):  # a list under way may bring the node
            async with self._lock:
                if self._due(name):  # another caller may have listed while we waited
                    await self._relist(name)
        found = self._nodes.get(name)
        if found is None:
            raise KubeletUnreadable(NODE_UNKNOWN, f"no Node named {_shown(name)} in the last node list")
        return found

    def _due(self, name: str) -> bool:
        now = self._clock()
        if self._listed is None or now - self._listed >= self._max_age:
            return self._tried is None or now - self._tried >= min(self._min_relist, self._max_age)
        return name not in self._nodes and (self._tried is None or now - self._tried >= self._min_relist)

    async def _relist(self, name: str) -> None:
        self._tried = self._clock()
        try:
            items = await self._client.list_nodes()
        except KubeError as exc:
            if name in self._nodes:  # a list of a few minutes ago is still the best address we have
                log.warning("listing nodes failed; using the previous list", extra={"error": str(exc)})
                return
            if exc.status == 403:
                raise KubeletUnreadable(
                    FORBIDDEN, f"listing nodes was refused: {exc}: our identity needs RBAC `list nodes`", 403
                ) from None
            raise KubeletUnreadable(NODE_UNKNOWN, f"listing nodes failed: {exc}", exc.status) from None
        self.lists += 1
        nodes = {}
        for item in items:
            meta = item.get("metadata") if isinstance(item, dict) else None
            if isinstance(meta, dict) and isinstance(meta.get("name"), str):
                nodes[meta["name"]] = item
        self._nodes = nodes
        self._listed = self._tried


# --- TLS and credentials ------------------------------------------------------------------------------------


def check_tls_settings(settings: KubeletSettings) -> None:
    """KUBELET_CA_FILE and KUBELET_INSECURE_TLS that cannot work (``ConfigError``), before connecting."""
    if settings.kubelet_ca_file is not None and not settings.kubelet_ca_file.is_file():
        raise ConfigError("KUBELET_CA_FILE", f"{settings.kubelet_ca_file} is not a file")
    if settings.kubelet_insecure_tls and settings.kubelet_ca_file is not None:
        raise ConfigError("KUBELET_INSECURE_TLS", "cannot be true when KUBELET_CA_FILE is set: choose one")


def kubelet_ssl_context(settings: KubeletSettings, credentials: ApiCredentials) -> ssl.SSLContext:
    """Verify the kubelets' serving certificates against KUBELET_CA_FILE, else the cluster CA, else
    the system's trust store; or not at all with KUBELET_INSECURE_TLS. Present the client certificate
    of the kubeconfig, if it has one."""
    check_tls_settings(settings)
    ca = settings.kubelet_ca_file or credentials.ca_file
    try:
        context = ssl.create_default_context(
            cafile=str(ca) if ca and not settings.kubelet_insecure_tls else None
        )
    except (OSError, ssl.SSLError) as exc:  # SSLError is an OSError: "[X509] PEM lib" says little
        variable = "KUBELET_CA_FILE" if settings.kubelet_ca_file else "KUBECONFIG"
        why = "no PEM certificate in it" if isinstance(exc, ssl.SSLError) else exc.strerror
        raise ConfigError(variable, f"cannot read the CA file {str(ca)!r}: {why}") from None
    if settings.kubelet_insecure_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if credentials.client_cert and credentials.client_key:
        try:
            context.load_cert_chain(credentials.client_cert, credentials.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("KUBECONFIG", f"cannot load the client certificate: {exc}") from None
    return context


def _authorization(credentials: ApiCredentials) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials.token.strip()}"} if credentials.token else {}


# --- the readers --------------------------------------------------------------------------------------------


class DirectReader:
    """GET ``https://<address>:<port>/stats/summary`` of each node's kubelet, with the API identity."""

    def __init__(
        self,
        client: KubeClient,
        settings: KubeletSettings,
        credentials: ApiCredentials,
        timeout: float,
        nodes: NodeDirectory | None = None,
    ) -> None:
        self._client = client
        self._address_types = settings.kubelet_address_types
        self._timeout = timeout
        self._credentials = credentials
        self._nodes = nodes or NodeDirectory(client)
        self._reloaded: float | None = None
        self._tls = kubelet_ssl_context(settings, credentials)
        # One small pool per kubelet: httpcore's single pool scans every connection for every request,
        # which made a poll of 500 nodes cost 20 s of CPU; a pool per node keeps it linear.
        self._pools: dict[KubeletEndpoint, tuple[httpx.AsyncClient, float]] = {}
        self._pruned = time.monotonic()
        self.requests = 0  # requests to kubelets: benchmarks report it

    @classmethod
    async def connect(
        cls,
        client: KubeClient,
        settings: KubeletSettings,
        kube: KubeSettings,
        nodes: NodeDirectory | None = None,
    ) -> DirectReader:
        credentials = await client.credentials()
        reader = cls(client, settings, credentials, kube.kube_request_timeout_secs, nodes)
        ca = settings.kubelet_ca_file or credentials.ca_file
        if settings.kubelet_insecure_tls:
            log.warning(
                "KUBELET_INSECURE_TLS=true: kubelets' serving certificates are NOT verified; whoever can "
                "intercept the traffic to a node can read the token sent to it and forge its figures"
            )
        log.info(
            "reading kubelets directly (get nodes/stats)",
            extra={
                "address_types": ",".join(settings.kubelet_address_types),
                "ca": "none (not verified)"
                if settings.kubelet_insecure_tls
                else str(ca or "system trust store"),
                "credentials": "token"
                if credentials.token
                else ("client certificate" if credentials.client_cert else "none"),
            },
        )
        return reader

    async def close(self) -> None:
        pools, self._pools = self._pools, {}
        for pool, _ in pools.values():
            await pool.aclose()

    def _pool(self, endpoint: KubeletEndpoint) -> httpx.AsyncClient:
        now = time.monotonic()
        pool = self._pools.get(endpoint, (None, now))[0]
        if pool is None:
            limits = httpx.Limits(
                max_connections=2, max_keepalive_connections=1, keepalive_expiry=KEEPALIVE_S
            )
            pool = httpx.AsyncClient(verify=self._tls, timeout=httpx.Timeout(self._timeout), limits=limits)
        self._pools[endpoint] = (pool, now)
        return pool

    async def _prune(self) -> None:
        """Close the pools of kubelets no longer asked (a node gone, or its address changed)."""
        now = time.monotonic()
        if now - self._pruned < NODES_MAX_AGE_S:
            return
        stale = [endpoint for endpoint, (_, used) in self._pools.items() if used < self._pruned]
        self._pruned = now
        for endpoint in stale:
            pool, _ = self._pools.pop(endpoint)
            await pool.aclose()

    async def summary(self, node: str) -> JSON:
        await self._prune()
        endpoint = kubelet_endpoint(await self._nodes.get(node), self._address_types)
        status, body = await self._get(endpoint)
        if status == 401 and await self._reload_credentials():
            status, body = await self._get(endpoint)  # a rotated ServiceAccount token: once more
        if status == 401 and not (self._credentials.token or self._credentials.client_cert):
            raise KubeletUnreadable(
                UNAUTHORIZED,
                "the kubelet asks for credentials (401 Unauthorized) and we have none: the API is reached "
                "without a token or client certificate (KUBE_API_URL alone?)",
                401,
            )
        if status != 200:
            raise _from_status(status, body)
        try:
            document = json.loads(body)
        except ValueError:
            raise KubeletUnreadable(
                BAD_ANSWER, f"the kubelet's answer is not JSON: {_body_text(body, 80)}"
            ) from None
        if not isinstance(document, dict):
            raise KubeletUnreadable(BAD_ANSWER, "the kubelet's answer is not a JSON object")
        return document

    async def _get(self, endpoint: KubeletEndpoint) -> tuple[int, bytes]:
        self.requests += 1
        try:
            async with asyncio.timeout(self._timeout):  # httpx's are per read: a trickle could last forever
                async with self._pool(endpoint).stream(
                    "GET", endpoint.url, headers=_authorization(self._credentials)
                ) as response:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_SUMMARY_BYTES:
                            raise KubeletUnreadable(
                                BAD_ANSWER, f"the kubelet's answer is over {MAX_SUMMARY_BYTES} bytes"
                            )
                    return response.status_code, bytes(body)
        except KubeletUnreadable:
            raise
        except Exception as exc:
            raise _from_exception(exc, self._timeout) from None

    async def _reload_credentials(self) -> bool:
        """Read the credentials again (at most once a minute); True if the token changed."""
        now = time.monotonic()
        if self._reloaded is not None and now - self._reloaded < 60:
            return False
        self._reloaded = now
        try:
            fresh = await self._client.credentials(reload=True)
        except Exception as exc:  # kr8s re-reads files: keep the old credentials
            log.warning("reloading credentials failed", extra={"error": repr(exc)})
            return False
        changed = fresh.token != self._credentials.token
        self._credentials = fresh
        return changed


class ProxyReader:
    """GET ``/api/v1/nodes/<node>/proxy/stats/summary``: needs ``get nodes/proxy`` (see the module doc)."""

    def __init__(self, client: KubeClient) -> None:
        self._client = client

    async def summary(self, node: str) -> JSON:
        try:
            document = await self._client.stats_summary(node)
        except KubeError as exc:
            raise _from_api(exc) from None
        if not isinstance(document, dict):
            raise KubeletUnreadable(BAD_ANSWER, "the kubelet's answer is not a JSON object")
        return document

    async def close(self) -> None:
        """Nothing of its own: the API client is closed by its owner."""


async def summary_reader(client: KubeClient, settings: KubeletSettings, kube: KubeSettings) -> SummaryReader:
    """The reader KUBELET_ACCESS names."""
    if settings.kubelet_access == "proxy":
        log.warning(
            "KUBELET_ACCESS=proxy: reading kubelets through the API server's node proxy needs get "
            "nodes/proxy, which also allows running commands in every pod of every node"
        )
        return ProxyReader(client)
    return await DirectReader.connect(client, settings, kube)


# --- failures, classified ---------------------------------------------------------------------------------


def _from_status(status: int, body: bytes) -> KubeletUnreadable:
    text = _body_text(body)
    if status == 401:
        return KubeletUnreadable(
            UNAUTHORIZED,
            "the kubelet did not accept our credentials (401 Unauthorized): the kubelet must authenticate "
            "bearer tokens with the API server (kubelet authentication.webhook.enabled: true)",
            status,
        )
    if status == 403:
        return KubeletUnreadable(
            FORBIDDEN, f"the kubelet refused: 403 {text}: our identity needs RBAC `get nodes/stats`", status
        )
    return KubeletUnreadable(HTTP_ERROR, f"the kubelet answered {status}: {text}", status)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _from_exception(exc: BaseException, timeout: float) -> KubeletUnreadable:
    chain = _chain(exc)
    for link in chain:
        if isinstance(link, ssl.SSLCertVerificationError):
            return KubeletUnreadable(
                TLS,
                f"the kubelet's serving certificate does not verify (certificate verify failed: "
                f"{link.verify_message}): set KUBELET_CA_FILE to the CA that signed it, or "
                "KUBELET_INSECURE_TLS=true (see the README)",
            )
    # A timeout cancels a TLS read: its SSLWantReadError is in the chain too, and is not the cause.
    if any(isinstance(link, (TimeoutError, httpx.TimeoutException)) for link in chain):
        return KubeletUnreadable(TIMEOUT, f"the kubelet did not answer within {timeout:g} s")
    if any(isinstance(link, ConnectionRefusedError) for link in chain):
        return KubeletUnreadable(
            REFUSED,
            "connection refused: nothing listens on the kubelet port, or a firewall rejects this pod "
            "(KUBELET_ACCESS=proxy goes through the API server instead: see the README)",
        )
    for link in chain:
        if isinstance(link, ssl.SSLError):
            return KubeletUnreadable(TLS, f"TLS with the kubelet failed: {link.reason or link}")
    if isinstance(exc, httpx.TransportError):
        return KubeletUnreadable(UNREACHABLE, f"cannot reach the kubelet: {type(exc).__name__}: {exc}")
    return KubeletUnreadable(UNREACHABLE, f"reading the kubelet failed: {type(exc).__name__}: {exc}")


def _from_api(exc: KubeError) -> KubeletUnreadable:
    if exc.status == 403:
        return KubeletUnreadable(FORBIDDEN, f"{exc}: KUBELET_ACCESS=proxy needs RBAC `get nodes/proxy`", 403)
    if exc.status == 401:
        return KubeletUnreadable(UNAUTHORIZED, str(exc), 401)
    if exc.status == 404:
        return KubeletUnreadable(NODE_UNKNOWN, str(exc), 404)
    if exc.status is None and "timed out" in str(exc):
        return KubeletUnreadable(TIMEOUT, str(exc))
    return KubeletUnreadable(
        UNREACHABLE if exc.status in (None, 502, 503) else HTTP_ERROR, str(exc), exc.status
    )
