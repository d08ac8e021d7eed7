"""What a change of a launcher pod asks to collect now, before the hourly run: pure, tested directly.

The API keeps nothing of a deleted pod, and only the current and the previous run of a container, so
three changes cannot wait for the next run (docs/logs-collector.md, "Collecting before it is gone"):

* the pod is **going**: it has a ``deletionTimestamp`` (kube-apiserver's graceful deletion: the pod and
  its logs are served until the grace period ends, staging/src/k8s.io/apiserver/pkg/registry/rest/
  delete.go ``BeforeDelete``), or it has finished (phase ``Succeeded``/``Failed``: a migration source, a
  stopped VM), after which KubeVirt or the garbage collector removes it. Every stream is read to its end
  now; a finished pod writes nothing more, so its cursors are closed then;
* a container **restarted** (``restartCount`` up in ``containerStatuses`` or, for native sidecars,
  ``initContainerStatuses``): the run that ended is ``previous`` now, and the next restart drops it
  (kubelet keeps one dead instance per container, pkg/kubelet/kuberuntime/kuberuntime_gc.go
  ``evictContainers`` with MaxPerPodContainer 1, and reads ``previous`` from ``lastState.terminated``,
  pkg/kubelet/kubelet_pods.go ``validateContainerLogStatus``);
* the pod is **gone** (DELETED): nothing can be read any more; its cursors can be forgotten.

A pod that is going is read again at every later change until it is gone: a deleted pod's containers
still log while they shut down within the grace period.
"""

from __future__ import annotations

import dataclasses
from typing import Any

JSON = dict[str, Any]
FINISHED_PHASES = ("Succeeded", "Failed")
VMI_KIND = "VirtualMachineInstance"


@dataclasses.dataclass(frozen=True)
class Trigger:
    namespace: str
    pod: str
    vmi_uid: str  # the created-by label, else the VMI owner reference's uid ("" if neither)
    vmi_name: str  # the VMI owner reference's name ("" if none): a VMI already gone is still named
    going: bool = False  # read every stream to its end now
    finished: bool = False  # and close the pod's cursors afterwards (nothing more will be written)
    restarted: tuple[str, ...] = ()  # containers whose previous run must be read now
    gone: bool = False  # deleted: forget its cursors

    @property
    def containers(self) -> tuple[str, ...] | None:
        """The containers to read; None: all of them."""
        return None if self.going else self.restarted


def what_now(old: JSON | None, new: JSON | None) -> Trigger | None:
    """The collection a watch event (ADDED: old None; DELETED: new None) asks for now, or None."""
    current = new if new is not None else old
    if current is None:
        return None
    meta = _object(current.get("metadata"))
    namespace, name = meta.get("namespace"), meta.get("name")
    if not isinstance(namespace, str) or not isinstance(name, str) or not namespace or not name:
        return None  # not addressable: nothing can be read from it
    uid, owner = _vmi_of(meta)
    base = Trigger(namespace, name, uid, owner)
    if new is None:
        return dataclasses.replace(base, gone=True)
    if is_going(new):
        return dataclasses.replace(base, going=True, finished=is_finished(new))
    restarted = _restarted(old, new) if old is not None else ()
    if restarted:
        return dataclasses.replace(base, restarted=restarted)
    return None


def is_going(pod: JSON) -> bool:
    return bool(_object(pod.get("metadata")).get("deletionTimestamp")) or is_finished(pod)


def is_finished(pod: JSON) -> bool:
    return _object(pod.get("status")).get("phase") in FINISHED_PHASES


def _restarted(old: JSON, new: JSON) -> tuple[str, ...]:
    before, after = _restart_counts(old), _restart_counts(new)
    return tuple(name for name, count in after.items() if count > before.get(name, 0))


def _restart_counts(pod: JSON) -> dict[str, int]:
    status = _object(pod.get("status"))
    counts: dict[str, int] = {}
    for field in ("initContainerStatuses", "containerStatuses"):
        entries = status.get(field)
        for entry in entries if isinstance(entries, list) else ():
            if not isinstance(entry, dict):
                continue
            name, count = entry.get("name"), entry.get("restartCount")
            if isinstance(name, str) and name and isinstance(count, int) and not isinstance(count, bool):
                counts[name] = count
    return counts


def _vmi_of(meta: JSON) -> tuple[str, str]:
    """The VMI's uid and name as the pod names them: KubeVirt's virt-controller gives every launcher
    pod the ``kubevirt.io/created-by`` label and a controller owner reference to its VMI
    (pkg/virt-controller/services/template.go, ``podLabels`` and ``NewControllerRef``)."""
    labels = _object(meta.get("labels"))
    refs = meta.get("ownerReferences")
    owner = next(
        (
            ref
            for ref in (refs if isinstance(refs, list) else ())
            if isinstance(ref, dict) and ref.get("kind") == VMI_KIND
        ),
        {},
    )
    label = labels.get("kubevirt.io/created-by")
    uid = label if isinstance(label, str) and label else owner.get("uid")
    name = owner.get("name") if owner.get("uid") == uid else None  # a name only for that very VMI
    return (uid if isinstance(uid, str) else "", name if isinstance(name, str) else "")


def _object(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}
