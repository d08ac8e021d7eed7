"""The resource types the test cluster serves, and the discovery documents built from them.

Clients find resources through discovery before they touch them: kubectl maps ``vmi`` to
``kubevirt.io/v1 virtualmachineinstances`` from ``/apis/kubevirt.io/v1`` and decides from
``namespaced`` whether to put ``/namespaces/<ns>`` in the URL; ``kubectl apply`` asks the
OpenAPI v3 documents whether the server validates fields itself. kmock derives discovery from
whatever objects happen to exist and says ``groupVersion: "/v1"`` for the core group, which
kubectl rejects, so the documents here are built from one explicit table that mirrors a real
1.32 cluster with KubeVirt and HCO installed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

KUBERNETES_VERSION = "v1.32.0"
NAMESPACED_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CLUSTER_VERBS = NAMESPACED_VERBS
BASE_FIELDS = ("metadata.name", "metadata.namespace")
POD_FIELDS = (
    *BASE_FIELDS,
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)


@dataclass(frozen=True)
class Subresource:
    name: str
    kind: str
    verbs: tuple[str, ...]


@dataclass(frozen=True)
class ResourceType:
    """One served resource: its identity, naming and the field labels it can be selected on."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    field_labels: tuple[str, ...] = BASE_FIELDS
    builtin: bool = True  # built-in types omit apiVersion/kind on list items and speak strategic merge

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def group_path(self) -> str:
        """``api/v1`` or ``apis/<group>/<version>``: the prefix of every URL of this type."""
        return f"apis/{self.group}/{self.version}" if self.group else f"api/{self.version}"

    def collection_path(self, namespace: str | None) -> str:
        if self.namespaced and namespace is not None:
            return f"/{self.group_path}/namespaces/{namespace}/{self.plural}"
        return f"/{self.group_path}/{self.plural}"


def _sub(name: str, kind: str, *verbs: str) -> Subresource:
    return Subresource(name, kind, verbs)


_STATUS = ("get", "patch", "update")
_PROXY = ("create", "delete", "get", "patch", "update")

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType(
        "",
        "v1",
        "pods",
        "Pod",
        short_names=("po",),
        categories=("all",),
        field_labels=POD_FIELDS,
        subresources=(
            _sub("attach", "PodAttachOptions", "create", "get"),
            _sub("binding", "Binding", "create"),
            _sub("eviction", "Eviction", "create"),
            _sub("exec", "PodExecOptions", "create", "get"),
            _sub("log", "Pod", "get"),
            _sub("portforward", "PodPortForwardOptions", "create", "get"),
            _sub("proxy", "PodProxyOptions", *_PROXY),
            _sub("status", "Pod", *_STATUS),
        ),
    ),
    ResourceType(
        "",
        "v1",
        "namespaces",
        "Namespace",
        namespaced=False,
        short_names=("ns",),
        field_labels=("metadata.name", "status.phase"),
        subresources=(_sub("finalize", "Namespace", "update"), _sub("status", "Namespace", *_STATUS)),
    ),
    ResourceType(
        "",
        "v1",
        "nodes",
        "Node",
        namespaced=False,
        short_names=("no",),
        field_labels=("metadata.name", "spec.unschedulable"),
        subresources=(_sub("proxy", "NodeProxyOptions", *_PROXY), _sub("status", "Node", *_STATUS)),
    ),
    ResourceType("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    ResourceType("", "v1", "secrets", "Secret", field_labels=(*BASE_FIELDS, "type")),
    ResourceType(
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        short_names=("sa",),
        subresources=(_sub("token", "TokenRequest", "create"),),
    ),
    ResourceType(
        "",
        "v1",
        "services",
        "Service",
        short_names=("svc",),
        categories=("all",),
        subresources=(_sub("proxy", "ServiceProxyOptions", *_PROXY), _sub("status", "Service", *_STATUS)),
    ),
    ResourceType("", "v1", "endpoints", "Endpoints", short_names=("ep",)),
    ResourceType("", "v1", "events", "Event", short_names=("ev",)),
    ResourceType(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        short_names=("pvc",),
        subresources=(_sub("status", "PersistentVolumeClaim", *_STATUS),),
    ),
    ResourceType(
        "",
        "v1",
        "persistentvolumes",
        "PersistentVolume",
        namespaced=False,
        short_names=("pv",),
        subresources=(_sub("status", "PersistentVolume", *_STATUS),),
    ),
    ResourceType(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        short_names=("deploy",),
        categories=("all",),
        subresources=(_sub("scale", "Scale", *_STATUS), _sub("status", "Deployment", *_STATUS)),
    ),
    ResourceType(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        short_names=("ds",),
        categories=("all",),
        subresources=(_sub("status", "DaemonSet", *_STATUS),),
    ),
    ResourceType(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        short_names=("rs",),
        categories=("all",),
        subresources=(_sub("scale", "Scale", *_STATUS), _sub("status", "ReplicaSet", *_STATUS)),
    ),
    ResourceType(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        short_names=("sts",),
        categories=("all",),
        subresources=(_sub("scale", "Scale", *_STATUS), _sub("status", "StatefulSet", *_STATUS)),
    ),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    ResourceType(
        "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False
    ),
    ResourceType(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        short_names=("pdb",),
        subresources=(_sub("status", "PodDisruptionBudget", *_STATUS),),
    ),
    ResourceType(
        "kubevirt.io",
        "v1",
        "virtualmachineinstances",
        "VirtualMachineInstance",
        short_names=("vmi", "vmis"),
        categories=("all",),
        builtin=False,
    ),
    ResourceType(
        "kubevirt.io",
        "v1",
        "virtualmachines",
        "VirtualMachine",
        short_names=("vm", "vms"),
        categories=("all",),
        builtin=False,
        subresources=(_sub("status", "VirtualMachine", *_STATUS),),
    ),
    ResourceType(
        "kubevirt.io",
        "v1",
        "virtualmachineinstancemigrations",
        "VirtualMachineInstanceMigration",
        short_names=("vmim", "vmims"),
        categories=("all",),
        builtin=False,
        subresources=(_sub("status", "VirtualMachineInstanceMigration", *_STATUS),),
    ),
    ResourceType(
        "kubevirt.io",
        "v1",
        "kubevirts",
        "KubeVirt",
        short_names=("kv", "kvs"),
        categories=("all",),
        builtin=False,
    ),
    ResourceType(
        "hco.kubevirt.io",
        "v1beta1",
        "hyperconvergeds",
        "HyperConverged",
        short_names=("hco", "hcos"),
        categories=("all",),
        builtin=False,
        subresources=(_sub("status", "HyperConverged", *_STATUS),),
    ),
    # The Prometheus Operator's kinds that `make install OVERLAY=monitoring` applies, as its CRDs declare
    # them (prometheus-operator example/prometheus-operator-crd/monitoring.coreos.com_*.yaml: names,
    # short names, categories "prometheus-operator").
    ResourceType(
        "monitoring.coreos.com",
        "v1",
        "servicemonitors",
        "ServiceMonitor",
        short_names=("smon",),
        categories=("prometheus-operator",),
        builtin=False,
    ),
    ResourceType(
        "monitoring.coreos.com",
        "v1",
        "podmonitors",
        "PodMonitor",
        short_names=("pmon",),
        categories=("prometheus-operator",),
        builtin=False,
    ),
    ResourceType(
        "monitoring.coreos.com",
        "v1",
        "prometheusrules",
        "PrometheusRule",
        short_names=("promrule",),
        categories=("prometheus-operator",),
        builtin=False,
    ),
)

_BY_KEY: dict[tuple[str, str, str], ResourceType] = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND: dict[tuple[str, str], ResourceType] = {(r.api_version, r.kind): r for r in RESOURCES}


def find(group: str, version: str, plural: str) -> ResourceType | None:
    return _BY_KEY.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> ResourceType:
    """The resource of an ``apiVersion``/``kind`` pair (for the population helpers)."""
    return _BY_KIND[(api_version, kind)]


POD = by_kind("v1", "Pod")
NODE = by_kind("v1", "Node")
NAMESPACE = by_kind("v1", "Namespace")
VMI = by_kind("kubevirt.io/v1", "VirtualMachineInstance")
KUBEVIRT = by_kind("kubevirt.io/v1", "KubeVirt")
HYPERCONVERGED = by_kind("hco.kubevirt.io/v1beta1", "HyperConverged")


def _group_versions() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for res in RESOURCES:
        if res.group and res.version not in groups.setdefault(res.group, []):
            groups[res.group].append(res.version)
    return groups


# ---- discovery documents -------------------------------------------------------------------


def version_info() -> dict[str, str]:
    return {
        "major": "1",
        "minor": "32",
        "gitVersion": KUBERNETES_VERSION,
        "gitCommit": "70d3cc986aa8221cd1dfb1121852688902d3bf53",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T17:59:15Z",
        "goVersion": "go1.23.3",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group_document(group: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{group}/{version}", "version": version} for version in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list() -> dict[str, Any]:
    groups = [_group_document(group, versions) for group, versions in _group_versions().items()]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> dict[str, Any] | None:
    versions = _group_versions().get(group)
    if versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_document(group, versions)}


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    served = [res for res in RESOURCES if res.group == group and res.version == version]
    if not served:
        return None
    entries: list[dict[str, Any]] = []
    for res in served:
        verbs = list(NAMESPACED_VERBS if res.namespaced else CLUSTER_VERBS)
        entry: dict[str, Any] = {
            "name": res.plural,
            "singularName": res.singular,
            "namespaced": res.namespaced,
            "kind": res.kind,
            "verbs": verbs,
        }
        if res.short_names:
            entry["shortNames"] = list(res.short_names)
        if res.categories:
            entry["categories"] = list(res.categories)
        entry["storageVersionHash"] = _short_hash(f"{res.api_version}/{res.kind}")
        entries.append(entry)
        for sub in res.subresources:
            entries.append(
                {
                    "name": f"{res.plural}/{sub.name}",
                    "singularName": "",
                    "namespaced": res.namespaced,
                    "kind": sub.kind,
                    "verbs": list(sub.verbs),
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": res_api_version(group, version),
        "resources": entries,
    }


def res_api_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:11]


# ---- OpenAPI v3 ------------------------------------------------------------------------------
# kubectl apply (and create/replace) ask OpenAPI v3 whether the PATCH operation of each kind takes a
# ``fieldValidation`` query parameter; if it does, validation is left to the server and no schema is
# needed. The documents below say exactly that and no more: strategic merge is not advertised, so
# kubectl computes its patches from its compiled-in types (built-ins) or as JSON merge patches (CRs).

_PATCH_MEDIA_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)
_QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")


def openapi_paths() -> dict[str, Any]:
    """The ``/openapi/v3`` root: one entry per group-version, pointing at its document."""
    paths: dict[str, Any] = {}
    for gv_path in sorted({res.group_path for res in RESOURCES}):
        digest = hashlib.sha512(json.dumps(openapi_document(gv_path)).encode()).hexdigest().upper()[:128]
        paths[gv_path] = {"serverRelativeURL": f"/openapi/v3/{gv_path}?hash={digest}"}
    return {"paths": paths}


def _patch_operation(res: ResourceType) -> dict[str, Any]:
    schema = {"type": "object"}
    return {
        "operationId": f"patch{res.kind}",
        "parameters": [
            {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for name in _QUERY_PARAMS
        ],
        "requestBody": {
            "content": {media: {"schema": schema} for media in _PATCH_MEDIA_TYPES},
            "required": True,
        },
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}},
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": res.group, "version": res.version, "kind": res.kind},
    }


def openapi_document(gv_path: str) -> dict[str, Any] | None:
    served = [res for res in RESOURCES if res.group_path == gv_path]
    if not served:
        return None
    paths: dict[str, Any] = {}
    for res in served:
        if res.namespaced:
            item_path = f"/{gv_path}/namespaces/{{namespace}}/{res.plural}/{{name}}"
        else:
            item_path = f"/{gv_path}/{res.plural}/{{name}}"
        paths[item_path] = {"patch": _patch_operation(res)}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": {}},
    }


@dataclass
class ResourcePath:
    """A parsed resource URL: ``/api/v1/namespaces/ns/pods/name/log`` and the like."""

    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    extra: list[str] = field(default_factory=list)


def parse_path(path: str) -> ResourcePath | None:
    """Split a resource URL; ``None`` for anything that is not a resource URL (discovery, /version)."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace: str | None = None
    # /namespaces/<ns>/<plural>/...; but /namespaces/<ns>/status|finalize are the Namespace's own.
    if (
        rest[0] == "namespaces"
        and len(rest) >= 3
        and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    return ResourcePath(group, version, plural, namespace, name, subresource, rest[3:])
