"""The Kubernetes access layer against the KubeVirt test cluster: every call, and its failures."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kubevirt_test_cluster import KubeVirtCluster, VmiRef, handler_line
from stats_log_collector.kube import (
    KubeClient,
    KubeNotFound,
    KubeRejected,
    KubeUnavailable,
    Vmi,
)
from stats_log_collector.kube.retry import RetryPolicy
from stats_log_collector.settings import KubeSettings

FAST = RetryPolicy(retries=3, base_delay=0.01, max_delay=0.05)


def settings_for(cluster: KubeVirtCluster, **changes: object) -> KubeSettings:
    base = KubeSettings(kube_api_url=cluster.url, kube_request_timeout_secs=5.0, kube_retries=3)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def client(kubevirt_cluster: KubeVirtCluster) -> AsyncIterator[KubeClient]:
    kube = await KubeClient.connect(settings_for(kubevirt_cluster), FAST)
    yield kube
    await kube.close()


@pytest.fixture
def cluster(kubevirt_cluster: KubeVirtCluster) -> KubeVirtCluster:
    for namespace in ("vms", "other", "kubevirt"):
        kubevirt_cluster.add_namespace(namespace)
    for node in ("node1", "node2"):
        kubevirt_cluster.add_node(node)
        kubevirt_cluster.add_handler_pod(node)
    return kubevirt_cluster


async def _vmi_async(client: KubeClient, ref: VmiRef) -> Vmi:
    [vmi] = [vmi for vmi in await client.list_vmis([ref.namespace]) if vmi.name == ref.name]
    return vmi


def log_paths(cluster: KubeVirtCluster, fragment: str) -> list[str]:
    return [record.path for record in cluster.requests() if fragment in record.path]


# --- connecting ---------------------------------------------------------------------------------------


async def test_connect_with_a_kubeconfig_file(cluster: KubeVirtCluster, tmp_path: Path) -> None:
    config = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    cluster.add_vmi("vms", "vm1", "node1")
    kube = await KubeClient.connect(KubeSettings(kubeconfig=config), FAST)
    try:
        assert [vmi.name for vmi in await kube.list_vmis(["vms"])] == ["vm1"]
    finally:
        await kube.close()


async def test_connect_without_credentials_is_a_clear_error(tmp_path: Path) -> None:
    settings = KubeSettings(kubeconfig=tmp_path / "missing")
    with pytest.raises(KubeRejected, match="no Kubernetes credentials"):
        await KubeClient.connect(settings, FAST)


async def test_connect_retries_until_the_server_answers(cluster: KubeVirtCluster) -> None:
    cluster.inject("^/version", 503, times=2)
    kube = await KubeClient.connect(settings_for(cluster), FAST)
    await kube.close()
    assert len([r for r in cluster.requests() if r.path.startswith("/version")]) == 3


# --- VMIs, launcher and handler pods ------------------------------------------------------------------


async def test_list_vmis_per_namespace_and_all(cluster: KubeVirtCluster, client: KubeClient) -> None:
    one = cluster.add_vmi("vms", "vm1", "node1")
    cluster.add_vmi("vms", "vm2", "node2", phase="Scheduling")
    cluster.add_vmi("other", "vm3", "node1")
    vmis = {vmi.name: vmi for vmi in await client.list_vmis(["vms"])}
    assert set(vmis) == {"vm1", "vm2"}
    assert (vmis["vm1"].uid, vmis["vm1"].node, vmis["vm1"].phase) == (one.uid, "node1", "Running")
    assert vmis["vm2"].phase == "Scheduling"
    assert {v.name for v in await client.list_vmis(["vms", "other"])} == {"vm1", "vm2", "vm3"}
    assert {v.name for v in await client.list_vmis(["*"])} == {"vm1", "vm2", "vm3"}
    assert await client.list_vmis(["no-such-namespace"]) == []


async def test_launcher_pods_of_a_vmi_and_migration(cluster: KubeVirtCluster, client: KubeClient) -> None:
    vmi = cluster.add_vmi("vms", "vm1", "node1")
    other = cluster.add_vmi("vms", "vm2", "node1")
    source = cluster.add_launcher_pod(vmi)
    cluster.add_launcher_pod(other)
    [found] = await client.launcher_pods(await _vmi_async(client, vmi))
    assert found.name == source.name and found.node == "node1"
    # KubeVirt >= 1.6: guest-console-log is a native sidecar, after it the completed init containers
    assert found.containers == ("compute",) and found.sidecars == {"guest-console-log"}
    assert found.init_containers == ("guest-console-log", "container-disk-binary", "volumecontainerdisk-init")
    target = cluster.start_migration(vmi, "node2")
    pods = await client.launcher_pods(await _vmi_async(client, vmi))
    assert [pod.name for pod in pods] == [source.name, target.name]
    assert [pod.node for pod in pods] == ["node1", "node2"]


async def test_launcher_pods_by_namespace(cluster: KubeVirtCluster, client: KubeClient) -> None:
    for index in range(3):
        cluster.add_launcher_pod(cluster.add_vmi("vms", f"vm{index}", "node1"))
    cluster.add_launcher_pod(cluster.add_vmi("other", "elsewhere", "node1"))
    pods = await client.list_launcher_pods(["vms"])
    assert sorted(pod.labels["vm.kubevirt.io/name"] for pod in pods) == ["vm0", "vm1", "vm2"]
    assert [r.param("labelSelector") for r in cluster.requests() if r.path.endswith("/pods")] == [
        "kubevirt.io=virt-launcher"
    ]


async def test_handler_pod_on_a_node(cluster: KubeVirtCluster, client: KubeClient) -> None:
    pod = await client.handler_pod("node2", "kubevirt")
    assert pod is not None and pod.node == "node2" and pod.labels["kubevirt.io"] == "virt-handler"
    assert await client.handler_pod("node9", "kubevirt") is None
    assert set(await client.handler_pods("kubevirt")) == {"node1", "node2"}


async def test_handler_pod_in_the_hco_namespace(cluster: KubeVirtCluster, client: KubeClient) -> None:
    cluster.add_namespace("kubevirt-hyperconverged")
    cluster.add_handler_pod("node1", namespace="kubevirt-hyperconverged")
    pod = await client.handler_pod("node1", "kubevirt-hyperconverged")
    assert pod is not None and pod.namespace == "kubevirt-hyperconverged"


# --- logs ---------------------------------------------------------------------------------------------


async def read_all(client: KubeClient, *args: str, **kwargs: object) -> list[bytes]:
    async with client.stream_log(*args, **kwargs) as lines:  # type: ignore[arg-type]
        return [line async for line in lines]


async def test_log_with_timestamps_since_time_and_container(
    cluster: KubeVirtCluster, client: KubeClient
) -> None:
    vmi = cluster.add_vmi("vms", "vm1", "node1")
    pod = cluster.add_launcher_pod(vmi)
    start = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
    for second in range(5):
        stamp = start + timedelta(seconds=second, microseconds=500_000)
        cluster.append_log("vms", pod.name, "compute", f"compute line {second}", stamp)
    cluster.append_log("vms", pod.name, "guest-console-log", "login: ", start)
    lines = await read_all(
        client, "vms", pod.name, "compute", since_time=start + timedelta(seconds=2, microseconds=900_000)
    )
    # sinceTime travels at second precision: the 10:00:02.5 line is included, callers filter exactly.
    assert [line.split(b" ", 1)[1] for line in lines] == [
        b"compute line 2",
        b"compute line 3",
        b"compute line 4",
    ]
    assert lines[0].startswith(b"2026-11-23T10:00:02.500000000Z ")
    console = await read_all(client, "vms", pod.name, "guest-console-log")
    assert [line.split(b" ", 1)[1] for line in console] == [b"login: "]
    [record] = [
        r for r in cluster.requests() if r.path.endswith("/log") and r.param("container") == "compute"
    ]
    assert record.param("timestamps") == "true" and record.param("sinceTime") == "2026-11-23T10:00:02Z"


async def test_log_of_the_previous_container(cluster: KubeVirtCluster, client: KubeClient) -> None:
    pod = cluster.add_launcher_pod(cluster.add_vmi("vms", "vm1", "node1"))
    cluster.append_log("vms", pod.name, "compute", "before the crash")
    cluster.restart_container("vms", pod.name, "compute")
    cluster.append_log("vms", pod.name, "compute", "after the restart")
    previous = await read_all(client, "vms", pod.name, "compute", previous=True)
    current = await read_all(client, "vms", pod.name, "compute")
    assert [line.split(b" ", 1)[1] for line in previous] == [b"before the crash"]
    assert [line.split(b" ", 1)[1] for line in current] == [b"after the restart"]
    assert (await client.get_pod("vms", pod.name)).restart_count("compute") == 1


async def test_log_lines_are_bytes_even_when_not_utf8(cluster: KubeVirtCluster, client: KubeClient) -> None:
    pod = cluster.add_launcher_pod(cluster.add_vmi("vms", "vm1", "node1"))
    cluster.append_log("vms", pod.name, "compute", b"bad \xff\xfe bytes")
    [line] = await read_all(client, "vms", pod.name, "compute", timestamps=False)
    assert line == b"bad \xff\xfe bytes"


async def test_log_follow_sees_appended_lines(cluster: KubeVirtCluster, client: KubeClient) -> None:
    pod = cluster.add_launcher_pod(cluster.add_vmi("vms", "vm1", "node1"))
    cluster.append_log("vms", pod.name, "compute", "first")
    seen: list[bytes] = []
    async with client.stream_log("vms", pod.name, "compute", follow=True, timestamps=False) as lines:
        async for line in lines:
            seen.append(line)
            if line == b"first":
                await asyncio.to_thread(cluster.append_log, "vms", pod.name, "compute", "second")
            if line == b"second":
                break
    assert seen == [b"first", b"second"]


async def test_log_of_a_missing_pod_or_container(cluster: KubeVirtCluster, client: KubeClient) -> None:
    pod = cluster.add_launcher_pod(cluster.add_vmi("vms", "vm1", "node1"))
    with pytest.raises(KubeNotFound):
        await read_all(client, "vms", "no-such-pod", "compute")
    with pytest.raises(KubeRejected) as info:
        await read_all(client, "vms", pod.name, "no-such-container")
    assert info.value.status == 400
    with pytest.raises(KubeRejected, match="previous terminated container"):
        await read_all(client, "vms", pod.name, "compute", previous=True)


async def test_handler_lines_in_kubevirt_json_style(cluster: KubeVirtCluster, client: KubeClient) -> None:
    vmi = cluster.add_vmi("vms", "vm1", "node1")
    handler = await client.handler_pod("node1", "kubevirt")
    assert handler is not None
    cluster.append_log(
        "kubevirt",
        handler.name,
        "virt-handler",
        handler_line("Synchronization loop succeeded.", name=vmi.name, namespace=vmi.namespace, uid=vmi.uid),
    )
    [line] = await read_all(client, "kubevirt", handler.name, "virt-handler")
    assert b'"name":"vm1"' in line and f'"uid":"{vmi.uid}"'.encode() in line


# --- node proxy and exec ------------------------------------------------------------------------------


async def test_stats_summary_of_a_node(cluster: KubeVirtCluster, client: KubeClient) -> None:
    pod = cluster.add_launcher_pod(cluster.add_vmi("vms", "vm1", "node1"))
    cluster.set_container_memory(
        "vms", pod.name, "compute", rss_bytes=215_000_000, working_set_bytes=230_000_000
    )
    summary = await client.stats_summary("node1")
    assert summary["node"]["nodeName"] == "node1"
    [entry] = [p for p in summary["pods"] if p["podRef"]["name"] == pod.name]
    [compute] = [c for c in entry["containers"] if c["name"] == "compute"]
    assert compute["memory"]["rssBytes"] == 215_000_000
    assert compute["memory"]["workingSetBytes"] == 230_000_000
    assert log_paths(cluster, "/proxy/") == ["/api/v1/nodes/node1/proxy/stats/summary"]


async def test_stats_summary_of_unknown_and_unreachable_nodes(
    cluster: KubeVirtCluster, client: KubeClient
) -> None:
    with pytest.raises(KubeNotFound):
        await client.stats_summary("node9")
    cluster.set_node_reachable("node2", False)
    with pytest.raises(KubeUnavailable):
        await client.stats_summary("node2")
    assert len(log_paths(cluster, "/nodes/node2/proxy")) == 1 + FAST.retries


async def test_exec_returns_output_and_exit_code(cluster: KubeVirtCluster, client: KubeClient) -> None:
    pod = cluster.add_launcher_pod(cluster.add_vmi("vms", "vm1", "node1"))
    result = await client.exec("vms", pod.name, "compute", ["pidof", "virt-launcher"])
    assert result.exit_code == 0 and result.stdout.strip().isdigit()
    pid = result.stdout.split()[0].decode()
    status = await client.exec("vms", pod.name, "compute", ["cat", f"/proc/{pid}/status"])
    assert b"VmRSS:" in status.stdout and status.exit_code == 0
    missing = await client.exec("vms", pod.name, "compute", ["no-such-command"])
    assert missing.exit_code == 127 and missing.stdout == b"" and b"not found" in missing.stderr


async def test_exec_in_a_missing_pod(cluster: KubeVirtCluster, client: KubeClient) -> None:
    with pytest.raises(KubeNotFound):
        await client.exec("vms", "no-such-pod", "compute", ["true"])


# --- faults: retries, timeouts, vanishing pods --------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_transient_errors_are_retried(
    cluster: KubeVirtCluster, client: KubeClient, status: int
) -> None:
    cluster.add_vmi("vms", "vm1", "node1")
    cluster.inject("virtualmachineinstances", status, times=2)
    assert [vmi.name for vmi in await client.list_vmis(["vms"])] == ["vm1"]
    assert len(log_paths(cluster, "virtualmachineinstances")) == 3


@pytest.mark.parametrize("status", [400, 403, 409, 422])
async def test_client_errors_are_not_retried(
    cluster: KubeVirtCluster, client: KubeClient, status: int
) -> None:
    cluster.inject("virtualmachineinstances", status, times=None)
    with pytest.raises(KubeRejected) as info:
        await client.list_vmis(["vms"])
    assert info.value.status == status
    # kr8s re-reads credentials on 401/403 (a rotated token), which is not a retry with backoff.
    assert len(log_paths(cluster, "virtualmachineinstances")) == (4 if status == 403 else 1)


async def test_persistent_errors_give_up_after_the_retries(
    cluster: KubeVirtCluster, client: KubeClient
) -> None:
    cluster.inject("virtualmachineinstances", 500, times=None)
    with pytest.raises(KubeUnavailable) as info:
        await client.list_vmis(["vms"])
    assert info.value.status == 500
    assert len(log_paths(cluster, "virtualmachineinstances")) == 1 + FAST.retries


async def test_dropped_connections_are_retried(cluster: KubeVirtCluster, client: KubeClient) -> None:
    cluster.add_vmi("vms", "vm1", "node1")
    cluster.inject_drop("virtualmachineinstances", times=2)
    assert [vmi.name for vmi in await client.list_vmis(["vms"])] == ["vm1"]


async def test_every_call_has_a_timeout(cluster: KubeVirtCluster) -> None:
    cluster.add_vmi("vms", "vm1", "node1")
    kube = await KubeClient.connect(settings_for(cluster, kube_request_timeout_secs=0.3), FAST)
    try:
        cluster.inject_timeout("virtualmachineinstances", 2.0, times=1)
        assert [vmi.name for vmi in await kube.list_vmis(["vms"])] == ["vm1"]  # the retry succeeds
        cluster.inject_timeout("virtualmachineinstances", 2.0, times=None)
        started = asyncio.get_running_loop().time()
        with pytest.raises(KubeUnavailable, match="timed out"):
            await kube.list_vmis(["vms"])
        assert asyncio.get_running_loop().time() - started < 0.3 * (1 + FAST.retries) + 1.0
    finally:
        await kube.close()


async def test_log_open_is_retried(cluster: KubeVirtCluster, client: KubeClient) -> None:
    pod = cluster.add_launcher_pod(cluster.add_vmi("vms", "vm1", "node1"))
    cluster.append_log("vms", pod.name, "compute", "only line")
    cluster.inject("/log$", 503, times=2)
    lines = await read_all(client, "vms", pod.name, "compute", timestamps=False)
    assert lines == [b"only line"]


async def test_exec_upgrade_errors_are_retried(cluster: KubeVirtCluster, client: KubeClient) -> None:
    pod = cluster.add_launcher_pod(cluster.add_vmi("vms", "vm1", "node1"))
    cluster.inject("/exec$", 500, times=1)
    result = await client.exec("vms", pod.name, "compute", ["pidof", "virtqemud"])
    assert result.exit_code == 0


async def test_pod_vanishing_between_list_and_use(cluster: KubeVirtCluster, client: KubeClient) -> None:
    vmi = cluster.add_vmi("vms", "vm1", "node1")
    pod = cluster.add_launcher_pod(vmi)
    cluster.vanish_after_list("vms", pod.name)
    [listed] = await client.launcher_pods(await _vmi_async(client, vmi))
    assert listed.name == pod.name
    with pytest.raises(KubeNotFound):
        await read_all(client, "vms", pod.name, "compute")
    with pytest.raises(KubeNotFound):
        await client.exec("vms", pod.name, "compute", ["true"])


async def test_list_follows_continue_tokens(
    cluster: KubeVirtCluster, client: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(7):
        cluster.add_vmi("vms", f"vm{index}", "node1")
    monkeypatch.setattr("stats_log_collector.kube.client.LIST_PAGE_SIZE", 3)  # a setting, not a mock
    assert sorted(vmi.name for vmi in await client.list_vmis(["vms"])) == [f"vm{i}" for i in range(7)]
    pages = [r for r in cluster.requests() if r.path.endswith("virtualmachineinstances")]
    assert [r.param("limit") for r in pages] == ["3", "3", "3"]
    assert [r.param("continue") is not None for r in pages] == [False, True, True]


async def test_merge_patch_of_the_kubevirt_cr(cluster: KubeVirtCluster, client: KubeClient) -> None:
    cluster.add_kubevirt_cr("kubevirt")
    path = "/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts/kubevirt"
    patch = {"spec": {"configuration": {"developerConfiguration": {"logVerbosity": {"virtHandler": 4}}}}}
    answer = await client.patch_json(path, patch)
    assert answer["spec"]["configuration"]["developerConfiguration"]["logVerbosity"] == {"virtHandler": 4}
    stored = cluster.get_object("kubevirt.io/v1", "KubeVirt", "kubevirt", "kubevirt")
    assert stored is not None
    # merged, not replaced:
    assert stored["spec"]["configuration"]["developerConfiguration"]["featureGates"] == []
    [record] = [r for r in cluster.requests() if r.method == "PATCH"]
    assert record.path == path
    with pytest.raises(KubeNotFound):
        await client.patch_json("/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts/nope", patch)
