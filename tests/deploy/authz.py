"""Kubernetes RBAC, as much of it as the tests need to judge deploy/base/rbac.yaml.

Two halves: what a request needs (``needs``: method and path -> verb, API group, resource/subresource,
namespace, as the API server's request-info resolver derives them) and what a ServiceAccount is granted
(``grants``: its RoleBindings and ClusterRoleBindings, each ClusterRole's rules expanded). Comparing the
two in both directions is the "exactly what it uses, no more" check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubevirt_test_cluster import RequestRecord
from kubevirt_test_cluster.kubelets import KubeletRequest, request_subresources
from kubevirt_test_cluster.resources import parse_path

# Paths every authenticated user may GET (system:discovery, system:public-info-viewer).
DISCOVERY_PREFIXES = ("/version", "/api", "/apis", "/openapi", "/healthz", "/livez", "/readyz")
# A WebSocket upgrade is a GET; since 1.35 (AuthorizePodWebsocketUpgradeCreatePermission, on by default)
# the API server also checks `create` for these subresources.
CONNECT_SUBRESOURCES = {"exec", "attach", "portforward"}
ALL = "*"


@dataclass(frozen=True, order=True)
class Access:
    """One authorisation check: ``namespace`` is None for a cluster-scoped or all-namespaces request."""

    verb: str
    group: str
    resource: str  # "pods", "pods/log", "nodes/proxy"
    namespace: str | None


@dataclass(frozen=True, order=True)
class Grant:
    """A (verb, group, resource) a ServiceAccount holds in ``scope``: one namespace, or ``*`` (cluster)."""

    verb: str
    group: str
    resource: str
    scope: str
    role: str

    def allows(self, access: Access) -> bool:
        same = (self.verb, self.group, self.resource) == (access.verb, access.group, access.resource)
        return same and (self.scope == ALL or self.scope == access.namespace)


def needs(method: str, path: str, query: dict[str, list[str]]) -> list[Access]:
    """The checks one request passes; [] for discovery; AssertionError for anything else unexpected."""
    parsed = parse_path(path)
    if parsed is None:
        assert method == "GET" and path.rstrip("/").startswith(DISCOVERY_PREFIXES), f"{method} {path}"
        return []
    resource = parsed.plural + (f"/{parsed.subresource}" if parsed.subresource else "")
    if method == "GET" and parsed.name is None:
        verbs = ["watch" if query.get("watch", [""])[0] in ("true", "1") else "list"]
    elif method == "GET" and parsed.subresource in CONNECT_SUBRESOURCES:
        verbs = ["get", "create"]
    else:
        verbs = [
            {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
        ]
        if method == "DELETE" and parsed.name is None:
            verbs = ["deletecollection"]
    return [Access(verb, parsed.group, resource, parsed.namespace) for verb in verbs]


def accesses(records: Iterable[RequestRecord]) -> set[Access]:
    return {access for record in records for access in needs(record.method, record.path, record.query)}


def kubelet_accesses(records: Iterable[KubeletRequest]) -> set[Access]:
    """The checks the kubelets made of requests sent to them directly: ``<verb> nodes/<subresource>``,
    cluster-wide (kubernetes pkg/kubelet/server/auth.go ``GetRequestAttributes``). The last subresource
    is the one every kubelet checks (the first may be KEP-2862's finer one, tried before it)."""
    verbs = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    return {
        Access(verbs.get(record.method, "*"), "", f"nodes/{request_subresources(record.path)[-1]}", None)
        for record in records
    }


def grants(objects: Iterable[dict[str, Any]], namespace: str, account: str) -> set[Grant]:
    """Everything the ServiceAccount ``namespace/account`` is granted by ``objects`` (rendered manifests)."""
    objects = list(objects)
    cluster_roles = {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "ClusterRole"}
    roles = {
        (obj["metadata"]["namespace"], obj["metadata"]["name"]): obj
        for obj in objects
        if obj["kind"] == "Role"
    }
    found: set[Grant] = set()
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        subject = {"kind": "ServiceAccount", "name": account, "namespace": namespace}
        if subject not in binding.get("subjects", []):
            continue
        ref = binding["roleRef"]
        scope = binding["metadata"]["namespace"] if binding["kind"] == "RoleBinding" else ALL
        if ref["kind"] == "ClusterRole":
            role = cluster_roles[ref["name"]]
        else:
            role = roles[(binding["metadata"]["namespace"], ref["name"])]
        for rule in role.get("rules", []):
            for verb in rule["verbs"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        found.add(Grant(verb, group, resource, scope, ref["name"]))
    return found


def denied(needed: Iterable[Access], granted: Iterable[Grant]) -> list[Access]:
    granted = list(granted)
    return sorted(access for access in needed if not any(grant.allows(access) for grant in granted))


def unused(granted: Iterable[Grant], needed: Iterable[Access]) -> list[Grant]:
    """Grants no request used. A `watch` counts as used where the same `list` is: a list and then a watch
    from its resourceVersion is one way of following objects, and deploy/base/rbac.yaml grants the pair."""
    needed = list(needed)
    listed = [dataclasses.replace(access, verb="watch") for access in needed if access.verb == "list"]
    return sorted(
        grant for grant in granted if not any(grant.allows(access) for access in [*needed, *listed])
    )
