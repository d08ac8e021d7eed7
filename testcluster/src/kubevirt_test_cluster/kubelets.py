"""One HTTPS "kubelet" per node: the Summary API served directly, behind kubelet's own auth.

A collector may read ``/stats/summary`` from each node's kubelet (port
``status.daemonEndpoints.kubeletEndpoint.Port``) instead of through the API server's node proxy. What
it then meets is kubelet's server, modelled here from kubernetes ``pkg/kubelet/server``:

* TLS with the node's serving certificate (see :mod:`.pki`): the client must trust the CA;
* ``server.go`` ``InstallAuthFilter``: authenticate the request (a client certificate of the cluster
  CA, whose CN is the user, as kubelet's ``authentication.x509.clientCAFile``; else a bearer token, as
  its token webhook; neither, or an unknown token, is ``401 Unauthorized``), then authorize it with
  the attributes ``auth.go`` ``GetRequestAttributes`` derives from the path (``/stats/*`` is
  ``nodes/stats``, ``/metrics/*`` ``nodes/metrics``, ``/logs/*`` ``nodes/log``, ``/checkpoint/*``
  ``nodes/checkpoint``; with fine-grained authorization ``/pods``, ``/healthz``, ``/configz`` are
  tried as their own subresource then as ``nodes/proxy``; anything else is ``nodes/proxy``). The
  request passes when any of them is allowed, else ``403`` with kubelet's message ``Forbidden
  (user=..., verb=get, resource=nodes, subresource(s)=[stats])``.

Authorization is a table: user -> the subresources it may ``get``, standing for what the API server's
SubjectAccessReview answers from RBAC; tokens map to users. Every listener runs on the test cluster's
loop; a node marked unreachable keeps connections open and never answers.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .pki import CertificateAuthority

ALL = "*"
# pkg/kubelet/server/auth.go GetRequestAttributes: the HTTP method as an API verb.
VERBS = {"POST": "create", "GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
# Its paths with a subresource of their own, and those tried first when fine-grained authorization is
# on (KubeletFineGrainedAuthz, beta and on by default in 1.33), falling back to nodes/proxy.
OWN_SUBRESOURCE = {"/stats": "stats", "/metrics": "metrics", "/logs": "log", "/checkpoint": "checkpoint"}
FINE_GRAINED = {
    "/pods": "pods",
    "/runningpods": "pods",
    "/healthz": "healthz",
    "/configz": "configz",
    "/statusz": "statusz",
}


@dataclass(frozen=True)
class KubeletUser:
    """A user (of a token or a client certificate) and the node subresources it may ``get``."""

    name: str
    subresources: frozenset[str]

    def allows(self, verb: str, subresource: str) -> bool:
        if ALL in self.subresources:
            return True
        return verb == "get" and subresource in self.subresources


@dataclass(frozen=True)
class KubeletRequest:
    node: str
    method: str
    path: str
    status: int


def _is_subpath(path: str, prefix: str) -> bool:
    """auth.go ``isSubpath``: ``prefix`` itself or anything below it."""
    return path == prefix or path.startswith(prefix + "/")


def request_subresources(path: str) -> list[str]:
    """The subresources kubelet authorizes ``path`` as, in the order it tries them."""
    found = [name for prefix, name in FINE_GRAINED.items() if _is_subpath(path, prefix)][:1]
    own = [name for prefix, name in OWN_SUBRESOURCE.items() if _is_subpath(path, prefix)]
    return found + (own[:1] or ["proxy"])


def forbidden_message(user: str, verb: str, subresources: Iterable[str]) -> str:
    """server.go InstallAuthFilter's 403 text (Go's ``%v`` of a string slice: ``[a b]``)."""
    return f"Forbidden (user={user}, verb={verb}, resource=nodes, subresource(s)=[{' '.join(subresources)}])"


@dataclass
class KubeletFleet:
    """The kubelets of a test cluster: one TLS listener per node, sharing one aiohttp runner."""

    ca: CertificateAuthority
    summary: Callable[[str], Any]  # the node's Summary document, as the node proxy serves it
    unreachable: set[str]  # nodes whose kubelet does not answer (shared with the node proxy)
    tokens: dict[str, str] = field(default_factory=dict)  # bearer token -> user name
    users: dict[str, KubeletUser] = field(default_factory=dict)  # user name -> what it may get
    requests: list[KubeletRequest] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    _contexts: dict[str, ssl.SSLContext] = field(default_factory=dict)
    _nodes_by_port: dict[int, str] = field(default_factory=dict)
    _runner: web.ServerRunner | None = None
    _starting: set[asyncio.Task[None]] = field(default_factory=set)
    _folder: tempfile.TemporaryDirectory[str] = field(default_factory=tempfile.TemporaryDirectory)

    async def setup(self) -> None:
        self._runner = web.ServerRunner(
            web.Server(self._serve, handler_cancellation=True), shutdown_timeout=1.0
        )
        await self._runner.setup()

    def start(self, node: str, host: str = "127.0.0.1") -> int:
        """Start ``node``'s kubelet (on the loop thread, from synchronous code) and return its port.

        The socket listens at once, so the port can go into the Node object right away; connections
        that come before the TLS site is up wait in the listen backlog.
        """
        if node in self.ports:
            return self.ports[node]
        if self._runner is None:
            raise RuntimeError("the kubelets are not set up")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.verify_mode = ssl.CERT_OPTIONAL  # a client certificate authenticates, if there is one
        context.load_verify_locations(cadata=self.ca.cert_pem.decode())
        self._contexts[node] = context
        self.issue(node, self.ca, host)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.listen(128)
        port: int = sock.getsockname()[1]
        self.ports[node] = port
        self._nodes_by_port[port] = node
        site = web.SockSite(self._runner, sock, ssl_context=context)
        task = asyncio.get_running_loop().create_task(site.start())
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)
        return port

    def issue(self, node: str, ca: CertificateAuthority, host: str = "127.0.0.1") -> None:
        """Serve a new certificate for ``node``, signed by ``ca``, from the next TLS handshake on.

        A CA of the node's own is kubelet's default without serverTLSBootstrap: it makes a
        ``<host>-ca@<time>`` CA and signs its serving certificate with it
        (k8s.io/client-go/util/cert/cert.go, ``GenerateSelfSignedCertKeyWithFixtures``).
        """
        pair = ca.issue_serving(node, (host,))
        folder = Path(self._folder.name)
        serial = len(list(folder.iterdir()))
        cert, key = folder / f"{serial}.crt", folder / f"{serial}.key"
        cert.write_bytes(pair.cert_pem + ca.cert_pem)  # the chain, as kubelet serves it
        key.write_bytes(pair.key_pem)
        self._contexts[node].load_cert_chain(cert, key)

    async def close(self) -> None:
        if self._starting:
            await asyncio.gather(*self._starting, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._folder.cleanup()

    async def _serve(self, request: web.BaseRequest) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        node = self._nodes_by_port.get(sockname[1] if sockname else -1, "")
        if node in self.unreachable:  # a dead kubelet: the connection stays open, nothing comes back
            await asyncio.get_running_loop().create_future()  # until the client gives up
        response = self._answer(node, request)
        self.requests.append(KubeletRequest(node, request.method, request.path, response.status))
        return response

    def _answer(self, node: str, request: web.BaseRequest) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        user = self._authenticate(peer, request.headers.get("Authorization", ""))
        if user is None:
            return web.Response(status=401, text="Unauthorized")
        verb = VERBS.get(request.method, "")
        subresources = request_subresources(request.path)
        if not any(user.allows(verb, subresource) for subresource in subresources):
            return web.Response(status=403, text=forbidden_message(user.name, verb, subresources))
        if request.method == "GET" and request.path == "/stats/summary":
            body = json.dumps(self.summary(node), separators=(",", ":"))
            return web.Response(text=body, content_type="application/json")
        if request.method == "GET" and request.path == "/healthz":
            return web.Response(text="ok")
        return web.Response(status=404, text="404 page not found\n")

    def _authenticate(self, peer: Any, header: str) -> KubeletUser | None:
        """The user of a verified client certificate (its CN), else of a bearer token from the table
        (kubelet's webhook token authentication asks the API server: TokenReview); anything else
        authenticates no one (anonymous auth off). A user with no grant gets an empty one."""
        name = _common_name(peer)
        if name is None:
            scheme, _, token = header.partition(" ")
            name = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if name is None:
            return None
        return self.users.get(name, KubeletUser(name, frozenset()))


def _common_name(peer: Any) -> str | None:
    """The CN of a peer certificate as ``ssl`` gives it: ``{"subject": ((("commonName", "x"),), ...)}``."""
    for part in (peer or {}).get("subject", ()):
        for key, value in part:
            if key == "commonName":
                return str(value)
    return None
