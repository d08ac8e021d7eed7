"""``pods/{name}/log`` is rendered as kubelet renders it, parameter for parameter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from kubevirt_test_cluster import KubeVirtCluster, PodRef, parse_rfc3339

BASE = parse_rfc3339("2026-11-23T10:00:00Z")
NS = 1_000_000_000
# Lines at 10:00:00.5, 10:00:01.25, 10:00:02 exactly, 10:00:03.999999999
STAMPS = (BASE + NS // 2, BASE + NS + NS // 4, BASE + 2 * NS, BASE + 4 * NS - 1)


@pytest.fixture
def launcher(kubevirt_cluster: KubeVirtCluster) -> PodRef:
    vmi = kubevirt_cluster.add_vmi("vms", "vm1", "node-1")
    pod = kubevirt_cluster.add_launcher_pod(vmi)
    kubevirt_cluster.append_log_lines(
        "vms", pod.name, "compute", [(stamp, f"line{index}") for index, stamp in enumerate(STAMPS)]
    )
    return pod


async def fetch(
    cluster: KubeVirtCluster, pod: str, params: Mapping[str, str], namespace: str = "vms"
) -> tuple[int, str, CIMultiDictProxy[str]]:
    url = f"{cluster.url}/api/v1/namespaces/{namespace}/pods/{pod}/log"
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
        return response.status, await response.text(), response.headers


async def lines(cluster: KubeVirtCluster, pod: str, **params: str) -> list[str]:
    status, text, _ = await fetch(cluster, pod, {"container": "compute", **params})
    assert status == 200, text
    return text.splitlines()


async def test_plain_text_streamed_in_chunks(kubevirt_cluster: KubeVirtCluster, launcher: PodRef) -> None:
    status, text, headers = await fetch(kubevirt_cluster, launcher.name, {"container": "compute"})
    assert status == 200
    assert headers["Content-Type"] == "text/plain"
    assert headers["Transfer-Encoding"] == "chunked"
    assert text == "line0\nline1\nline2\nline3\n"


async def test_timestamps_are_rfc3339_with_nine_digits(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef
) -> None:
    assert await lines(kubevirt_cluster, launcher.name, timestamps="true") == [
        "2026-11-23T10:00:00.500000000Z line0",
        "2026-11-23T10:00:01.250000000Z line1",
        "2026-11-23T10:00:02.000000000Z line2",
        "2026-11-23T10:00:03.999999999Z line3",
    ]


@pytest.mark.parametrize(
    ("since_time", "expected"),
    [
        ("2026-11-23T10:00:01.9Z", ["line1", "line2", "line3"]),  # truncated to 10:00:01, so line1 is in
        ("2026-11-23T10:00:02Z", ["line2", "line3"]),  # a line exactly at sinceTime is included
        ("2026-11-23T10:00:02.000000001Z", ["line2", "line3"]),
        ("2026-11-23T11:00:03+01:00", ["line3"]),  # offsets are honoured
        ("2026-11-23T10:00:04Z", []),
    ],
)
async def test_since_time_is_truncated_to_seconds_and_inclusive(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef, since_time: str, expected: list[str]
) -> None:
    assert await lines(kubevirt_cluster, launcher.name, sinceTime=since_time) == expected


async def test_since_seconds_counts_back_from_now(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef
) -> None:
    now = time.time_ns()
    kubevirt_cluster.append_log_lines(
        "vms", launcher.name, "compute", [(now - 100 * NS, "old"), (now - 5 * NS, "new")]
    )
    assert await lines(kubevirt_cluster, launcher.name, sinceSeconds="30") == ["new"]


async def test_tail_lines_apply_before_the_time_filter(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef
) -> None:
    assert await lines(kubevirt_cluster, launcher.name, tailLines="2") == ["line2", "line3"]
    assert await lines(kubevirt_cluster, launcher.name, tailLines="0") == []
    # The last 3 lines, then those at or after 10:00:02: two lines, not three.
    assert await lines(kubevirt_cluster, launcher.name, tailLines="3", sinceTime="2026-11-23T10:00:02Z") == [
        "line2",
        "line3",
    ]


async def test_limit_bytes_counts_timestamp_prefixes(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef
) -> None:
    status, text, _ = await fetch(
        kubevirt_cluster, launcher.name, {"container": "compute", "limitBytes": "8"}
    )
    assert (status, text) == (200, "line0\nli")
    _, stamped, _ = await fetch(
        kubevirt_cluster, launcher.name, {"container": "compute", "limitBytes": "40", "timestamps": "1"}
    )
    assert stamped == "2026-11-23T10:00:00.500000000Z line0\n202"  # 31 + 6 + 3 bytes


async def test_previous_after_a_restart(kubevirt_cluster: KubeVirtCluster, launcher: PodRef) -> None:
    status, text, _ = await fetch(
        kubevirt_cluster, launcher.name, {"container": "compute", "previous": "true"}
    )
    assert status == 400
    assert f'previous terminated container \\"compute\\" in pod \\"{launcher.name}\\" not found' in text
    assert kubevirt_cluster.restart_container("vms", launcher.name, "compute") == 1
    kubevirt_cluster.append_log("vms", launcher.name, "compute", "after restart")
    assert await lines(kubevirt_cluster, launcher.name, previous="true") == [
        "line0",
        "line1",
        "line2",
        "line3",
    ]
    assert await lines(kubevirt_cluster, launcher.name) == ["after restart"]
    pod = kubevirt_cluster.get_object("v1", "Pod", "vms", launcher.name)
    assert pod is not None
    compute = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "compute")
    assert compute["restartCount"] == 1 and compute["lastState"]["terminated"]["exitCode"] == 137


CHOOSE = "a container name must be specified for pod {pod}, choose one of: "


@pytest.mark.parametrize(
    ("version", "params", "message"),
    [
        ("1.5.0", {}, CHOOSE + "[container-disk-binary volumecontainerdisk-init compute guest-console-log]"),
        ("1.6.0", {"container": "nope"}, "container nope is not valid for pod {pod}"),
        ("1.5.0", {"container": "nope"}, "container nope is not valid for pod {pod}"),
    ],
)
async def test_container_errors(
    kubevirt_cluster: KubeVirtCluster, version: str, params: dict[str, str], message: str
) -> None:
    vmi = kubevirt_cluster.add_vmi("vms", "vm1", "node-1")
    launcher = kubevirt_cluster.add_launcher_pod(vmi, kubevirt_version=version)
    url = f"{kubevirt_cluster.url}/api/v1/namespaces/vms/pods/{launcher.name}/log"
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
        body = await response.json()
    assert response.status == 400
    assert (body["reason"], body["message"]) == ("BadRequest", message.format(pod=launcher.name))


async def test_invalid_options_are_rejected(kubevirt_cluster: KubeVirtCluster, launcher: PodRef) -> None:
    status, text, _ = await fetch(
        kubevirt_cluster,
        launcher.name,
        {"container": "compute", "sinceSeconds": "5", "sinceTime": "2026-11-23T10:00:00Z"},
    )
    assert status == 422 and "at most one of `sinceTime` or `sinceSeconds` may be specified" in text
    status, text, _ = await fetch(
        kubevirt_cluster, launcher.name, {"container": "compute", "sinceTime": "yesterday"}
    )
    assert status == 400 and "cannot parse" in text


async def test_missing_pod_is_404(kubevirt_cluster: KubeVirtCluster, launcher: PodRef) -> None:
    status, text, _ = await fetch(kubevirt_cluster, "ghost", {"container": "compute"})
    assert status == 404 and 'pods \\"ghost\\" not found' in text


async def test_follow_streams_appended_lines_until_the_pod_is_deleted(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef
) -> None:
    url = f"{kubevirt_cluster.url}/api/v1/namespaces/vms/pods/{launcher.name}/log"
    params = {"container": "compute", "follow": "true", "tailLines": "1"}
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
        assert await response.content.readline() == b"line3\n"
        kubevirt_cluster.append_log("vms", launcher.name, "compute", b"live one\nlive two\n")
        assert await asyncio.wait_for(response.content.readline(), 5) == b"live one\n"
        assert await asyncio.wait_for(response.content.readline(), 5) == b"live two\n"
        kubevirt_cluster.delete_pod("vms", launcher.name)
        assert await asyncio.wait_for(response.content.read(), 5) == b""  # the stream ends


async def test_follow_ends_when_the_container_restarts(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef
) -> None:
    url = f"{kubevirt_cluster.url}/api/v1/namespaces/vms/pods/{launcher.name}/log"
    params = {
        "container": "compute",
        "follow": "true",
        "sinceTime": "2026-11-23T10:00:03Z",
        "timestamps": "true",
    }
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
        assert await response.content.readline() == b"2026-11-23T10:00:03.999999999Z line3\n"
        kubevirt_cluster.restart_container("vms", launcher.name, "compute")
        assert await asyncio.wait_for(response.content.read(), 5) == b""


async def test_client_disconnect_releases_a_follower(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef
) -> None:
    url = f"{kubevirt_cluster.url}/api/v1/namespaces/vms/pods/{launcher.name}/log"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, params={"container": "compute", "follow": "1"}) as response,
    ):
        await response.content.readline()
    for _ in range(50):
        if kubevirt_cluster.requests()[-1].status == 200:
            break
        await asyncio.sleep(0.02)
    # The server keeps serving after the follower went away.
    assert await lines(kubevirt_cluster, launcher.name, tailLines="1") == ["line3"]


async def test_large_log_with_datetime_stamps(kubevirt_cluster: KubeVirtCluster, launcher: PodRef) -> None:
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    line = "x" * 90
    count = 100_000
    entries = ((BASE - NS * 3600 + i * 1000, f"{i:08d} {line}") for i in range(count))
    kubevirt_cluster.append_log_lines("vms", launcher.name, "guest-console-log", entries)
    kubevirt_cluster.append_log(
        "vms", launcher.name, "guest-console-log", "the end", time=start.replace(hour=11)
    )
    status, text, _ = await fetch(kubevirt_cluster, launcher.name, {"container": "guest-console-log"})
    assert status == 200
    assert len(text) == count * 100 + len("the end\n")
    assert text.endswith(f"{count - 1:08d} {line}\nthe end\n")
    _, tail, _ = await fetch(
        kubevirt_cluster,
        launcher.name,
        {"container": "guest-console-log", "sinceTime": "2026-11-23T11:00:00Z", "timestamps": "1"},
    )
    assert tail == "2026-11-23T11:00:00.000000000Z the end\n"


@pytest.mark.parametrize("container", ["guest-console-log", "container-disk-binary"])
async def test_init_containers_and_native_sidecars_have_logs_and_previous_runs(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef, container: str
) -> None:
    # kubectl logs -c <init container or native sidecar> [--previous] works as for any container
    assert launcher.containers == ("compute", "guest-console-log")
    assert launcher.init_containers == ("container-disk-binary", "volumecontainerdisk-init")
    kubevirt_cluster.append_log("vms", launcher.name, container, "first run", STAMPS[0])
    assert await lines(kubevirt_cluster, launcher.name, container=container) == ["first run"]
    status, text, _ = await fetch(
        kubevirt_cluster, launcher.name, {"container": container, "previous": "true"}
    )
    assert status == 400 and f'previous terminated container \\"{container}\\"' in text
    assert kubevirt_cluster.restart_container("vms", launcher.name, container) == 1
    kubevirt_cluster.append_log("vms", launcher.name, container, "second run", STAMPS[1])
    assert await lines(kubevirt_cluster, launcher.name, container=container, previous="true") == ["first run"]
    assert await lines(kubevirt_cluster, launcher.name, container=container) == ["second run"]
    pod = kubevirt_cluster.get_object("v1", "Pod", "vms", launcher.name)
    assert pod is not None
    [status_entry] = [s for s in pod["status"]["initContainerStatuses"] if s["name"] == container]
    assert status_entry["restartCount"] == 1 and status_entry["lastState"]["terminated"]["exitCode"] == 137
    assert all(s["restartCount"] == 0 for s in pod["status"]["containerStatuses"])


async def test_a_v0_59_launcher_pod_has_no_console_log_container(kubevirt_cluster: KubeVirtCluster) -> None:
    vmi = kubevirt_cluster.add_vmi("vms", "vm.with.dots", "node-1")
    pod = kubevirt_cluster.add_launcher_pod(vmi, kubevirt_version="0.59.0")
    assert pod.containers == ("compute",)
    status, text, _ = await fetch(kubevirt_cluster, pod.name, {"container": "guest-console-log"})
    assert status == 400 and "container guest-console-log is not valid" in text
    body = kubevirt_cluster.get_object("v1", "Pod", "vms", pod.name)
    assert body is not None
    assert body["metadata"]["labels"]["vm.kubevirt.io/name"] == body["spec"]["hostname"] == "vm"
    completed = [s["state"]["terminated"]["reason"] for s in body["status"]["initContainerStatuses"]]
    assert completed == ["Completed", "Completed"]


async def test_a_pod_initialising_serves_its_sidecar_log_and_says_why_the_others_have_none(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef
) -> None:
    kubevirt_cluster.set_pod_initialising("vms", launcher.name)
    kubevirt_cluster.append_log("vms", launcher.name, "guest-console-log", "tail error", STAMPS[0])
    assert await lines(kubevirt_cluster, launcher.name, container="guest-console-log") == ["tail error"]
    for container in ("compute", "container-disk-binary"):
        status, text, _ = await fetch(kubevirt_cluster, launcher.name, {"container": container})
        assert status == 400
        assert (
            f'container \\"{container}\\" in pod \\"{launcher.name}\\" is waiting to start: PodInitializing'
            in text
        )
    pod = kubevirt_cluster.get_object("v1", "Pod", "vms", launcher.name)
    assert pod is not None and pod["status"]["phase"] == "Pending"
