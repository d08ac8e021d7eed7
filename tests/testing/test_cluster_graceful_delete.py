"""Pod deletion with a grace period, as kube-apiserver does it: marked (MODIFIED), served, then removed.

The model follows ``rest.BeforeDelete`` and the pod strategy's ``CheckGracefulDelete`` (see
``kubevirt_test_cluster.store``): the grace comes from DeleteOptions (body, else query), else from the
pod's terminationGracePeriodSeconds; the pod and its logs stay until the grace ends.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import time
from typing import Any

import aiohttp

from kubevirt_test_cluster import KubeVirtCluster, PodRef


def launcher(cluster: KubeVirtCluster, name: str = "vm-1") -> PodRef:
    vmi = cluster.add_vmi("vms", name, "node-1")
    pod = cluster.add_launcher_pod(vmi)
    cluster.append_log("vms", pod.name, "compute", "line 1")
    return pod


async def delete(
    cluster: KubeVirtCluster, pod: str, query: dict[str, str] | None = None, body: Any = None
) -> tuple[int, Any]:
    url = f"{cluster.url}/api/v1/namespaces/vms/pods/{pod}"
    data = json.dumps(body).encode() if body is not None else None
    async with (
        aiohttp.ClientSession() as session,
        session.delete(url, params=query or {}, data=data) as response,
    ):
        return response.status, await response.json()


async def log_status(cluster: KubeVirtCluster, pod: str) -> tuple[int, str]:
    url = f"{cluster.url}/api/v1/namespaces/vms/pods/{pod}/log"
    async with aiohttp.ClientSession() as session, session.get(url, params={"container": "compute"}) as r:
        return r.status, await r.text()


def seconds(stamp: str) -> int:
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


async def test_a_graceful_delete_marks_the_pod_keeps_its_logs_then_removes_it(
    kubevirt_cluster: KubeVirtCluster,
) -> None:
    pod = launcher(kubevirt_cluster)
    url = kubevirt_cluster.url + "/api/v1/namespaces/vms/pods"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            version = (await response.json())["metadata"]["resourceVersion"]
        params = {"watch": "true", "resourceVersion": version, "timeoutSeconds": "10"}
        async with session.get(url, params=params) as watch:
            began = int(time.time())
            status, answer = await delete(kubevirt_cluster, pod.name, {"gracePeriodSeconds": "60"})
            assert status == 200 and answer["metadata"]["deletionGracePeriodSeconds"] == 60
            assert began + 60 <= seconds(answer["metadata"]["deletionTimestamp"]) <= began + 62
            marked = json.loads(await watch.content.readline())
            assert (marked["type"], marked["object"]["metadata"]["deletionGracePeriodSeconds"]) == (
                "MODIFIED",
                60,
            )
            assert await log_status(kubevirt_cluster, pod.name) == (200, "line 1\n")
            kubevirt_cluster.append_log("vms", pod.name, "compute", "line 2")  # still running
            again, _ = await delete(kubevirt_cluster, pod.name, {"gracePeriodSeconds": "90"})
            assert again == 200  # a longer grace changes nothing: no event
            kubevirt_cluster.finish_deletion("vms", pod.name)
            gone = json.loads(await watch.content.readline())
    assert (gone["type"], gone["object"]["metadata"]["name"]) == ("DELETED", pod.name)
    assert (await log_status(kubevirt_cluster, pod.name))[0] == 404


async def test_the_grace_period_ends_by_itself(kubevirt_cluster: KubeVirtCluster) -> None:
    pod = launcher(kubevirt_cluster)
    kubevirt_cluster.delete_pod("vms", pod.name, grace_period_seconds=1)
    assert kubevirt_cluster.get_object("v1", "Pod", "vms", pod.name) is not None
    for _ in range(60):
        if kubevirt_cluster.get_object("v1", "Pod", "vms", pod.name) is None:
            break
        await asyncio.sleep(0.1)
    assert kubevirt_cluster.get_object("v1", "Pod", "vms", pod.name) is None


async def test_where_the_grace_comes_from(kubevirt_cluster: KubeVirtCluster) -> None:
    spec_default = launcher(kubevirt_cluster, "a")  # the launcher's terminationGracePeriodSeconds: 210
    _, answer = await delete(kubevirt_cluster, spec_default.name)
    assert answer["metadata"]["deletionGracePeriodSeconds"] == 210
    from_body = launcher(kubevirt_cluster, "b")  # DeleteOptions in the body win over the query
    _, answer = await delete(
        kubevirt_cluster, from_body.name, {"gracePeriodSeconds": "5"}, {"gracePeriodSeconds": 7}
    )
    assert answer["metadata"]["deletionGracePeriodSeconds"] == 7
    negative = launcher(kubevirt_cluster, "c")
    _, answer = await delete(kubevirt_cluster, negative.name, {"gracePeriodSeconds": "-5"})
    assert answer["metadata"]["deletionGracePeriodSeconds"] == 1
    finished = launcher(kubevirt_cluster, "d")  # a Succeeded pod goes at once
    kubevirt_cluster.set_pod_phase("vms", finished.name, "Succeeded")
    await delete(kubevirt_cluster, finished.name, {"gracePeriodSeconds": "30"})
    assert kubevirt_cluster.get_object("v1", "Pod", "vms", finished.name) is None
    status, problem = await delete(kubevirt_cluster, negative.name, {"gracePeriodSeconds": "soon"})
    assert status == 400 and "gracePeriodSeconds" in problem["message"]


async def test_a_shorter_grace_moves_the_deadline_and_zero_removes_now(
    kubevirt_cluster: KubeVirtCluster,
) -> None:
    pod = launcher(kubevirt_cluster)
    _, first = await delete(kubevirt_cluster, pod.name, {"gracePeriodSeconds": "100"})
    _, shorter = await delete(kubevirt_cluster, pod.name, {"gracePeriodSeconds": "40"})
    deadline = seconds(first["metadata"]["deletionTimestamp"])
    assert seconds(shorter["metadata"]["deletionTimestamp"]) == deadline - 60
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 40
    await delete(kubevirt_cluster, pod.name, {"gracePeriodSeconds": "0"})
    assert kubevirt_cluster.get_object("v1", "Pod", "vms", pod.name) is None


def test_previous_log_is_the_last_terminated_run_only(kubevirt_cluster: KubeVirtCluster) -> None:
    # kubelet keeps one dead instance per container (kuberuntime_gc.go, MaxPerPodContainer 1) and
    # answers previous=true from lastState.terminated (kubelet_pods.go validateContainerLogStatus)
    pod = launcher(kubevirt_cluster)
    for run in (2, 3, 4):
        kubevirt_cluster.restart_container("vms", pod.name, "compute")
        kubevirt_cluster.append_log("vms", pod.name, "compute", f"line {run}")

    async def read(previous: str) -> str:
        url = f"{kubevirt_cluster.url}/api/v1/namespaces/vms/pods/{pod.name}/log"
        params = {"container": "compute", "previous": previous}
        async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
            return await response.text()

    assert asyncio.run(read("true")) == "line 3\n"
    assert asyncio.run(read("false")) == "line 4\n"
