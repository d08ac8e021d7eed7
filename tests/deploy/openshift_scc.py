"""OpenShift's SecurityContextConstraints, as much of them as the tests need to judge a pod against one.

The three SCCs the OpenShift overlay relies on, with the fields of their definitions in
openshift/cluster-kube-apiserver-operator (bindata/assets/scc/0000_20_kube-apiserver-operator_00_scc-
restricted-v2.yaml, -hostmount-anyuid.yaml, -privileged.yaml), and the checks OpenShift's admission makes
with them (openshift/apiserver-library-go pkg/securitycontextconstraints: the user, fsGroup, capability,
seccomp and volume strategies). A UID range of ``None`` is MustRunAsRange: OpenShift assigns the UID from
the namespace's range, so the pod may not ask for one (a fixed one outside the range is refused); the
same for fsGroup with MustRunAs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Scc:
    name: str
    run_as_any_user: bool  # RunAsAny; else MustRunAsRange: no fixed runAsUser
    run_as_any_fs_group: bool  # RunAsAny; else MustRunAs: no fixed fsGroup
    host_pid: bool
    host_network: bool
    host_ipc: bool
    host_path: bool
    privilege_escalation: bool
    privileged_container: bool
    allowed_capabilities: frozenset[str]  # "*": any
    required_drop: frozenset[str]  # "ALL" included: every capability must be dropped
    seccomp_profiles: frozenset[str]  # empty: none may be set; "*": any
    volumes: frozenset[str]


_COMMON_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim"}
_COMMON_VOLUMES |= {"projected", "secret"}

RESTRICTED_V2 = Scc(
    "restricted-v2",
    run_as_any_user=False,
    run_as_any_fs_group=False,
    host_pid=False,
    host_network=False,
    host_ipc=False,
    host_path=False,
    privilege_escalation=False,
    privileged_container=False,
    allowed_capabilities=frozenset({"NET_BIND_SERVICE"}),
    required_drop=frozenset({"ALL"}),
    seccomp_profiles=frozenset({"runtime/default"}),
    volumes=frozenset(_COMMON_VOLUMES),
)
HOSTMOUNT_ANYUID = Scc(
    "hostmount-anyuid",
    run_as_any_user=True,
    run_as_any_fs_group=True,
    host_pid=False,
    host_network=False,
    host_ipc=False,
    host_path=True,
    privilege_escalation=True,
    privileged_container=False,
    allowed_capabilities=frozenset(),
    required_drop=frozenset({"MKNOD"}),
    seccomp_profiles=frozenset(),
    volumes=frozenset({*_COMMON_VOLUMES, "hostPath", "nfs"}),
)
PRIVILEGED = Scc(
    "privileged",
    run_as_any_user=True,
    run_as_any_fs_group=True,
    host_pid=True,
    host_network=True,
    host_ipc=True,
    host_path=True,
    privilege_escalation=True,
    privileged_container=True,
    allowed_capabilities=frozenset({"*"}),
    required_drop=frozenset(),
    seccomp_profiles=frozenset({"*"}),
    volumes=frozenset({"*"}),
)
BY_NAME = {scc.name: scc for scc in (RESTRICTED_V2, HOSTMOUNT_ANYUID, PRIVILEGED)}
SECCOMP = {"RuntimeDefault": "runtime/default", "Unconfined": "unconfined"}


def violations(pod: Obj, scc: Scc) -> list[str]:
    """What in the pod spec ``scc`` refuses; [] when the pod is admitted under it."""
    found: list[str] = []
    context = pod.get("securityContext", {})
    contexts = [("pod", context)] + [(c["name"], c.get("securityContext", {})) for c in pod["containers"]]
    for where, ctx in contexts:
        if not scc.run_as_any_user and "runAsUser" in ctx:
            found.append(f"{where}: runAsUser is assigned by OpenShift (MustRunAsRange)")
        if not scc.run_as_any_user and "runAsGroup" in ctx:
            found.append(f"{where}: runAsGroup is assigned by OpenShift")
        profile = ctx.get("seccompProfile", {}).get("type")
        if profile is not None and "*" not in scc.seccomp_profiles:
            if not scc.seccomp_profiles:
                found.append(f"{where}: seccomp may not be set")
            elif SECCOMP.get(profile, profile) not in scc.seccomp_profiles:
                found.append(f"{where}: seccomp profile {profile} not allowed")
    if not scc.run_as_any_fs_group and "fsGroup" in context:
        found.append("pod: fsGroup is assigned by OpenShift (MustRunAs)")
    for flag, allowed in (
        ("hostPID", scc.host_pid),
        ("hostNetwork", scc.host_network),
        ("hostIPC", scc.host_ipc),
    ):
        if pod.get(flag) and not allowed:
            found.append(f"pod: {flag}")
    for volume in pod.get("volumes", []):
        kind = next(key for key in volume if key != "name")
        if "*" not in scc.volumes and kind not in scc.volumes:
            found.append(f"volume {volume['name']}: {kind}")
    for container in pod["containers"]:
        ctx = container.get("securityContext", {})
        name = container["name"]
        if ctx.get("privileged") and not scc.privileged_container:
            found.append(f"{name}: privileged")
        if ctx.get("allowPrivilegeEscalation", True) and not scc.privilege_escalation:
            found.append(f"{name}: allowPrivilegeEscalation must be false")
        capabilities = ctx.get("capabilities", {})
        added, dropped = set(capabilities.get("add", [])), set(capabilities.get("drop", []))
        if "*" not in scc.allowed_capabilities and added - scc.allowed_capabilities:
            found.append(f"{name}: capabilities {sorted(added - scc.allowed_capabilities)}")
        if "ALL" not in dropped and scc.required_drop - dropped:
            found.append(f"{name}: must drop {sorted(scc.required_drop - dropped)}")
    return found
