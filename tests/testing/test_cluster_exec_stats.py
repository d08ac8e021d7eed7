"""Exec over WebSocket into the emulated virt-launcher, and the kubelet Summary API via the node proxy."""

from __future__ import annotations

import json

import aiohttp
import kr8s
import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import Pod

from kubevirt_test_cluster import CommandResult, KubeVirtCluster, PodRef, proc_status


@pytest.fixture
def launcher(kubevirt_cluster: KubeVirtCluster) -> PodRef:
    vmi = kubevirt_cluster.add_vmi("vms", "vm1", "node-1")
    return kubevirt_cluster.add_launcher_pod(vmi)


async def kr8s_pod(cluster: KubeVirtCluster, pod: PodRef) -> Pod:
    api = await kr8s.asyncio.api(url=cluster.url)
    return await Pod.get(pod.name, namespace=pod.namespace, api=api)


async def test_pidof_and_cat_in_the_default_launcher(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef
) -> None:
    pod = await kr8s_pod(kubevirt_cluster, launcher)
    found = await pod.exec(["pidof", "virt-launcher"], container="compute")
    assert (found.stdout, found.stderr, found.returncode) == (b"12\n", b"", 0)
    several = await pod.exec(["pidof", "virtqemud", "virtlogd"], container="compute")
    assert several.stdout == b"26 25\n"  # newest first, like procps
    status = await pod.exec(["cat", "/proc/82/status"], container="compute")
    text = status.stdout.decode()
    assert text.startswith("Name:\tqemu-kvm\n") and "\nVmRSS:\t  215000 kB\n" in text
    fields = dict(line.split(":\t", 1) for line in text.splitlines())
    rss = (
        int(fields["RssAnon"].split()[0])
        + int(fields["RssFile"].split()[0])
        + int(fields["RssShmem"].split()[0])
    )
    assert rss == int(fields["VmRSS"].split()[0])


async def test_exit_codes_and_stderr(kubevirt_cluster: KubeVirtCluster, launcher: PodRef) -> None:
    pod = await kr8s_pod(kubevirt_cluster, launcher)
    absent = await pod.exec(["pidof", "nothing"], container="compute", check=False)
    assert (absent.stdout, absent.returncode) == (b"", 1)
    missing = await pod.exec(["cat", "/proc/12/status", "/proc/999/status"], container="compute", check=False)
    assert missing.returncode == 1 and missing.stdout.startswith(b"Name:\tvirt-launcher\n")
    assert missing.stderr == b"cat: /proc/999/status: No such file or directory\n"
    unknown = await pod.exec(["ps", "aux"], container="compute", check=False)
    assert (unknown.returncode, unknown.stderr) == (127, b"ps: command not found\n")
    with pytest.raises(BaseException) as caught:  # kr8s raises ExecError inside an ExceptionGroup (httpx-ws)
        await pod.exec(["pidof", "nothing"], container="compute")
    error = caught.value
    assert isinstance(error, kr8s.ExecError) or (
        isinstance(error, BaseExceptionGroup) and caught.group_contains(kr8s.ExecError, match="exit code 1")
    )
    console = await pod.exec(["pidof", "qemu-kvm"], container="guest-console-log", check=False)
    assert console.returncode == 1  # the processes live in compute only


async def test_process_table_and_custom_handler(kubevirt_cluster: KubeVirtCluster, launcher: PodRef) -> None:
    kubevirt_cluster.set_processes(
        "vms",
        launcher.name,
        {
            7: ("virt-launcher", proc_status("virt-launcher", 7, vm_rss_kb=50_000)),
            9: ("virt-launcher", proc_status("virt-launcher", 9, vm_rss_kb=60_000)),
        },
    )
    pod = await kr8s_pod(kubevirt_cluster, launcher)
    assert (await pod.exec(["pidof", "virt-launcher"], container="compute")).stdout == b"9 7\n"
    seen: list[tuple[str, str, str, list[str]]] = []

    def handler(namespace: str, name: str, container: str, command: list[str]) -> CommandResult:
        seen.append((namespace, name, container, command))
        return CommandResult(stdout=b"out", stderr=b"err", exit_code=3)

    kubevirt_cluster.set_exec_handler(handler)
    result = await pod.exec(["anything", "--flag"], container="compute", check=False)
    assert (result.stdout, result.stderr, result.returncode) == (b"out", b"err", 3)
    assert seen == [("vms", launcher.name, "compute", ["anything", "--flag"])]
    kubevirt_cluster.set_exec_handler(None)
    assert (await pod.exec(["pidof", "virt-launcher"], container="compute")).stdout == b"9 7\n"


async def test_a_failing_handler_is_an_internal_error(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef
) -> None:
    def broken(namespace: str, name: str, container: str, command: list[str]) -> CommandResult:
        raise RuntimeError("handler bug")

    kubevirt_cluster.set_exec_handler(broken)
    url = (
        f"{kubevirt_cluster.url}/api/v1/namespaces/vms/pods/{launcher.name}/exec"
        "?command=ls&container=compute&stdout=true"
    )
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, protocols=("v4.channel.k8s.io",)) as ws,
    ):
        frames = [message.data async for message in ws]
    [error] = frames
    status = json.loads(error[1:])
    assert error[0] == 3 and status["reason"] == "InternalError" and "handler bug" in status["message"]


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "v5.channel.k8s.io"])
async def test_raw_channel_protocol(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef, protocol: str
) -> None:
    url = (
        f"{kubevirt_cluster.url}/api/v1/namespaces/vms/pods/{launcher.name}/exec"
        "?command=cat&command=/nope&container=compute&stdout=true&stderr=true"
    )
    frames: list[bytes] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url, protocols=(protocol,)) as ws:
        assert ws.protocol == protocol
        async for message in ws:
            assert message.type == aiohttp.WSMsgType.BINARY
            frames.append(message.data)
    assert [frame[0] for frame in frames] == [2, 3]  # stderr, then the error channel
    assert frames[0][1:] == b"cat: /nope: No such file or directory\n"
    assert json.loads(frames[1][1:]) == {
        "metadata": {},
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "message": "command terminated with non-zero exit code: error executing command [...], exit code 1",
        "details": {"causes": [{"reason": "ExitCode", "message": "1"}]},
    }


async def test_exec_errors_come_before_the_upgrade(
    kubevirt_cluster: KubeVirtCluster, launcher: PodRef
) -> None:
    base = f"{kubevirt_cluster.url}/api/v1/namespaces/vms/pods"
    # before KubeVirt 1.6 guest-console-log was a second regular container: a name is required, and
    # the choices are every container, init containers first (strategy.go validateContainer)
    vmi = kubevirt_cluster.add_vmi("vms", "vm-old", "node-1")
    old = kubevirt_cluster.add_launcher_pod(vmi, kubevirt_version="1.5.0")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/{old.name}/exec?command=ls") as response:
            body = await response.json()
        assert (response.status, body["message"]) == (
            400,
            f"a container name must be specified for pod {old.name}, "
            "choose one of: [container-disk-binary volumecontainerdisk-init compute guest-console-log]",
        )
        # since 1.6 compute is the only regular container: it is the default (then the upgrade is due)
        async with session.get(f"{base}/{launcher.name}/exec?command=ls") as response:
            assert (response.status, (await response.json())["message"]) == (400, "Upgrade request required")
        async with session.get(f"{base}/ghost/exec?command=ls&container=compute") as response:
            assert response.status == 404
        async with session.get(f"{base}/{launcher.name}/exec?command=ls&container=compute") as response:
            assert (response.status, (await response.json())["message"]) == (400, "Upgrade request required")


async def test_stats_summary_reports_memory_per_container(kubevirt_cluster: KubeVirtCluster) -> None:
    cluster = kubevirt_cluster
    here = cluster.add_launcher_pod(cluster.add_vmi("vms", "vm1", "node-1"))
    cluster.add_launcher_pod(cluster.add_vmi("vms", "vm2", "node-2"))
    handler = cluster.add_handler_pod("node-1")
    cluster.set_container_memory(
        "vms", here.name, "compute", rss_bytes=300 << 20, working_set_bytes=320 << 20, usage_bytes=400 << 20
    )
    cluster.set_container_memory(
        "vms", here.name, "guest-console-log", rss_bytes=10 << 20, working_set_bytes=12 << 20
    )
    api = await kr8s.asyncio.api(url=cluster.url)
    async with api.call_api(
        "GET", version="v1", base="/api", url="nodes/node-1/proxy/stats/summary"
    ) as response:
        summary = response.json()
    assert summary["node"]["nodeName"] == "node-1"
    pods = {entry["podRef"]["name"]: entry for entry in summary["pods"]}
    assert set(pods) == {here.name, handler.name}  # only the pods on node-1
    assert pods[here.name]["podRef"] == {"name": here.name, "namespace": "vms", "uid": here.uid}
    containers = {entry["name"]: entry["memory"] for entry in pods[here.name]["containers"]}
    assert containers["compute"]["rssBytes"] == 300 << 20
    assert containers["compute"]["workingSetBytes"] == 320 << 20
    assert containers["compute"]["usageBytes"] == 400 << 20
    assert {"time", "pageFaults", "majorPageFaults"} <= set(containers["compute"])
    assert pods[here.name]["memory"]["rssBytes"] == 310 << 20
    assert pods[here.name]["memory"]["workingSetBytes"] == 332 << 20


async def test_stats_summary_of_unknown_and_unreachable_nodes(kubevirt_cluster: KubeVirtCluster) -> None:
    kubevirt_cluster.add_node("node-1")
    url = kubevirt_cluster.url + "/api/v1/nodes/{}/proxy/stats/summary"
    async with aiohttp.ClientSession() as session:
        async with session.get(url.format("ghost")) as response:
            assert (response.status, (await response.json())["message"]) == (404, 'nodes "ghost" not found')
        kubevirt_cluster.set_node_reachable("node-1", False)
        async with session.get(url.format("node-1")) as response:
            body = await response.json()
        assert (response.status, body["reason"]) == (503, "ServiceUnavailable")
        assert body["message"].startswith("error trying to reach service: dial tcp 127.0.0.1:")
        kubevirt_cluster.set_node_reachable("node-1")
        async with session.get(url.format("node-1")) as response:
            assert response.status == 200


async def test_stats_summary_follows_pods_deleted_stopped_and_recreated(
    kubevirt_cluster: KubeVirtCluster,
) -> None:
    """The Summary comes from a per-node index of pods; it must follow every change as a scan would."""
    cluster = kubevirt_cluster
    vm1 = cluster.add_vmi("vms", "vm1", "node-1")
    first = cluster.add_launcher_pod(vm1)
    second = cluster.add_launcher_pod(cluster.add_vmi("vms", "vm2", "node-1"))
    url = cluster.url + "/api/v1/nodes/node-1/proxy/stats/summary"

    async def names() -> set[str]:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return {entry["podRef"]["name"] for entry in (await response.json())["pods"]}

    assert await names() == {first.name, second.name}
    cluster.set_pod_phase("vms", second.name, "Succeeded")
    assert await names() == {first.name}
    cluster.delete_pod("vms", first.name)
    assert await names() == set()
    again = cluster.add_launcher_pod(vm1, name=first.name)  # the same name, created anew
    assert await names() == {again.name}
