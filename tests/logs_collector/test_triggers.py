"""What a launcher pod's change asks to collect now: going, finished, restarted, gone; hostile shapes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stats_log_collector.logs_collector.triggers import Trigger, what_now

JSON = dict[str, Any]


def pod(phase: str = "Running", restarts: int = 0, sidecar_restarts: int = 0, **meta: Any) -> JSON:
    return {
        "metadata": {
            "namespace": "vms",
            "name": "virt-launcher-vm-1-abcde",
            "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": "uid-1"},
            "ownerReferences": [{"kind": "VirtualMachineInstance", "name": "vm-1", "uid": "uid-1"}],
            **meta,
        },
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "compute", "restartCount": restarts}],
            "initContainerStatuses": [
                {"name": "guest-console-log", "restartCount": sidecar_restarts},
                {"name": "container-disk-binary", "restartCount": 0},
            ],
        },
    }


BASE = Trigger("vms", "virt-launcher-vm-1-abcde", "uid-1", "vm-1")


def test_a_running_pod_that_did_not_restart_asks_for_nothing() -> None:
    assert what_now(None, pod()) is None
    assert what_now(pod(), pod()) is None


def test_a_deletion_timestamp_makes_it_going_not_finished() -> None:
    deleted = pod(deletionTimestamp="2026-12-01T06:30:00Z", deletionGracePeriodSeconds=30)
    trigger = what_now(pod(), deleted)
    assert trigger == Trigger(**{**BASE.__dict__, "going": True})
    assert trigger is not None and trigger.containers is None  # every container


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_a_finished_pod_is_going_and_closed_after(phase: str) -> None:
    assert what_now(pod(), pod(phase)) == Trigger(**{**BASE.__dict__, "going": True, "finished": True})
    # seen first already finished (the collector was down, or a relist after 410)
    assert what_now(None, pod(phase)) == Trigger(**{**BASE.__dict__, "going": True, "finished": True})


def test_restarts_in_containers_and_native_sidecars() -> None:
    trigger = what_now(pod(restarts=1), pod(restarts=2, sidecar_restarts=1))
    assert trigger is not None and trigger.restarted == ("guest-console-log", "compute")
    assert trigger.containers == ("guest-console-log", "compute") and not trigger.going
    assert what_now(pod(restarts=2), pod(restarts=2)) is None
    assert what_now(pod(restarts=3), pod(restarts=2)) is None  # never down: nothing to read


def test_a_restart_of_a_going_pod_reads_everything() -> None:
    trigger = what_now(pod(restarts=0), pod("Failed", restarts=1))
    assert trigger is not None and trigger.going and trigger.containers is None


def test_gone_is_reported_with_the_old_object() -> None:
    assert what_now(pod(), None) == Trigger(**{**BASE.__dict__, "gone": True})
    assert what_now(None, None) is None


def test_the_vmi_named_by_owner_reference_when_the_label_is_gone() -> None:
    bare = pod(phase="Succeeded")
    del bare["metadata"]["labels"]
    trigger = what_now(None, bare)
    assert trigger is not None and (trigger.vmi_uid, trigger.vmi_name) == ("uid-1", "vm-1")
    other = pod(phase="Succeeded")  # the owner is another VMI than the label's: no name taken from it
    other["metadata"]["ownerReferences"][0]["uid"] = "uid-2"
    trigger = what_now(None, other)
    assert trigger is not None and (trigger.vmi_uid, trigger.vmi_name) == ("uid-1", "")


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.update(metadata=None),
        lambda p: p["metadata"].update(name=7),
        lambda p: p["metadata"].update(namespace=""),
        lambda p: p.update(status="Running"),
        lambda p: p["status"].update(containerStatuses={"name": "compute"}),
        lambda p: p["status"].update(containerStatuses=[None, {"name": None, "restartCount": 9}]),
        lambda p: p["status"].update(containerStatuses=[{"name": "compute", "restartCount": True}]),
        lambda p: p["status"].update(containerStatuses=[{"name": "compute", "restartCount": "9"}]),
        lambda p: p["metadata"].update(ownerReferences="vm-1", labels=["x"]),
    ],
)
def test_hostile_shapes_never_raise(damage: Any) -> None:
    new = pod(restarts=0)
    damage(new)
    for old in (pod(), None):
        result = what_now(copy.deepcopy(old), copy.deepcopy(new))
        assert result is None or isinstance(result, Trigger)
