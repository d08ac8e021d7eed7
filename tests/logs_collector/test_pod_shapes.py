"""Every container of a launcher pod, for each shape KubeVirt has given it (v0.59 through v1.7).

Before v1.1 there is no guest-console-log; from v1.1 to v1.5 it is a regular container; since v1.6 it
is a native sidecar in ``initContainers`` (restartPolicy Always, status in ``initContainerStatuses``).
Init containers that ran to completion are collected once, whole.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

from kubevirt_test_cluster import KubeVirtCluster
from kubevirt_test_cluster.resources import by_kind
from tests.logs_collector.conftest import Scenario, collect

INIT = ("container-disk-binary", "volumecontainerdisk-init")
SHAPES = [
    ("0.59.0", ("compute", *INIT)),
    ("1.5.0", ("compute", "guest-console-log", *INIT)),
    ("1.6.0", ("compute", "guest-console-log", *INIT)),
    ("1.7.0", ("compute", "guest-console-log", *INIT)),
]


def log_requests(cluster: KubeVirtCluster, container: str, previous: bool | None = None) -> int:
    return sum(
        1
        for record in cluster.requests()
        if record.path.endswith("/log")
        and record.param("container") == container
        and (previous is None or (record.param("previous") == "true") == previous)
    )


@pytest.mark.parametrize(("version", "containers"), SHAPES)
async def test_every_container_of_each_pod_shape_exactly_once(
    scenario: Scenario, version: str, containers: tuple[str, ...]
) -> None:
    scenario.vm("vm-1", "node-1", kubevirt_version=version, init_lines=3)
    pod = scenario.pods["vm-1"][0]
    for _ in range(3):
        scenario.launcher("vm-1", lines=4)
        summary = await collect(scenario.cluster, scenario.data_dir)
        assert not summary.failed_vms and summary.skipped == 0
        scenario.assert_exact()
    assert sorted({container for _, container in scenario.collected("vm-1") if container}) == sorted(
        containers
    )
    for container in INIT:  # read once, whole, then never asked for again
        assert log_requests(scenario.cluster, container) == 1
    assert all(scenario.expected["vm-1"][(pod.name, container)] for container in containers)


async def test_native_sidecar_restart_collects_its_previous_run_once(scenario: Scenario) -> None:
    scenario.vm("vm-1", "node-1", kubevirt_version="1.6.0")
    pod = scenario.pods["vm-1"][0]
    scenario.launcher("vm-1")
    await collect(scenario.cluster, scenario.data_dir)
    scenario.launcher("vm-1")  # the end of guest-console-log's run that is about to die
    assert scenario.cluster.restart_container(pod.namespace, pod.name, "guest-console-log") == 1
    body = scenario.cluster.get_object("v1", "Pod", pod.namespace, pod.name)
    assert body is not None
    [status] = [s for s in body["status"]["initContainerStatuses"] if s["name"] == "guest-console-log"]
    assert status["restartCount"] == 1 and "terminated" in status["lastState"]
    scenario.launcher("vm-1")  # guest-console-log: its new run; compute: the same run
    for _ in range(2):
        summary = await collect(scenario.cluster, scenario.data_dir)
        assert not summary.failed_vms
        scenario.assert_exact()
    assert log_requests(scenario.cluster, "guest-console-log", previous=True) == 1
    assert log_requests(scenario.cluster, "compute", previous=True) == 0


def put_pod(cluster: KubeVirtCluster, body: dict[str, Any]) -> None:
    cluster.call(lambda api: api.store.put(by_kind("v1", "Pod"), body))


async def test_odd_pod_shapes_skip_that_container_or_pod_and_the_rest_is_collected(
    scenario: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    scenario.vm("vm-odd", "node-1")
    scenario.vm("vm-empty", "node-1")
    scenario.vm("vm-fine", "node-2")
    odd = scenario.pods["vm-odd"][0]
    body = copy.deepcopy(scenario.cluster.get_object("v1", "Pod", "vms", odd.name))
    assert body is not None
    body["spec"]["initContainers"][0]["restartPolicy"] = "Sometimes"  # guest-console-log
    body["status"]["containerStatuses"].append({"name": "ghost", "restartCount": 7})
    body["status"]["initContainerStatuses"].append({"restartCount": 1})
    put_pod(scenario.cluster, body)
    empty = scenario.pods["vm-empty"][0]
    body = copy.deepcopy(scenario.cluster.get_object("v1", "Pod", "vms", empty.name))
    assert body is not None
    body["spec"].update(containers=[], initContainers=None)
    body["status"].update(containerStatuses=None, initContainerStatuses=[])
    put_pod(scenario.cluster, body)
    scenario.launcher("vm-fine")
    scenario.cluster.append_log("vms", odd.name, "compute", "compute still collected", scenario.stamp())
    caplog.set_level(logging.WARNING)
    summary = await collect(scenario.cluster, scenario.data_dir)
    assert summary.skipped == 4 and not summary.failed_vms
    scenario.assert_exact(["vm-fine"])
    collected = scenario.collected("vm-odd")
    assert [line.split(b" ", 1)[1] for line in collected[(odd.name, "compute")]] == [
        b"compute still collected"
    ]
    assert (odd.name, "guest-console-log") not in collected
    reasons = sorted(r.reason for r in caplog.records if r.getMessage().startswith("launcher pod shape"))  # type: ignore[attr-defined]
    assert reasons == sorted(
        [
            f"pod {odd.name}: init container 'guest-console-log' has an unknown restartPolicy 'Sometimes'",
            f"pod {odd.name}: containerStatuses has a status for 'ghost', which the spec does not have",
            f"pod {odd.name}: initContainerStatuses has a status without a name",
            f"pod {empty.name} has no containers in its spec",
        ]
    )


async def test_a_pod_stuck_initialising_has_its_console_log_collected(scenario: Scenario) -> None:
    # kubevirt/kubevirt#15355: pods stuck in Init with guest-console-log running; its log says why
    scenario.vm("vm-1", "node-1", kubevirt_version="1.6.0", init_lines=2)
    pod = scenario.pods["vm-1"][0]
    running = scenario.cluster.get_object("v1", "Pod", "vms", pod.name)
    scenario.cluster.set_pod_initialising("vms", pod.name)
    text = "tail error: Failed to detect creation of /var/run/kubevirt-private/x/virt-serial0-log"
    scenario.cluster.append_log("vms", pod.name, "guest-console-log", text, scenario.stamp())
    summary = await collect(scenario.cluster, scenario.data_dir)
    assert not summary.failed_vms
    collected = scenario.collected("vm-1")
    assert list(collected) == [(pod.name, "guest-console-log")]
    assert collected[(pod.name, "guest-console-log")][0].endswith(text.encode())
    assert log_requests(scenario.cluster, "compute") == 0
    # initialised at last: everything else follows, the console log goes on from where it was
    scenario.expected["vm-1"][(pod.name, "guest-console-log")].insert(
        0, collected[(pod.name, "guest-console-log")][0]
    )
    assert running is not None
    put_pod(scenario.cluster, running)
    scenario.launcher("vm-1")
    await collect(scenario.cluster, scenario.data_dir)
    scenario.assert_exact()
