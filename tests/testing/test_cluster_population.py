"""Populated clusters look like KubeVirt's, scale to benchmark size, and are safe to drive from anywhere."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import kr8s
import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import APIObject

from kubevirt_test_cluster import KubeVirtCluster


async def get_json(url: str, **params: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def get_text(url: str, **params: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
        assert response.status == 200
        return await response.text()


# (KubeVirt version, spec.containers, spec.initContainers with their restartPolicy), as template.go renders
# them (see kubevirt_test_cluster.objects.launcher_pod): no console log before 1.1, a regular container
# until 1.5, a native sidecar since 1.6.
SHAPES = [
    ("0.59.0", ["compute"], [("container-disk-binary", None), ("volumecontainerdisk-init", None)]),
    (
        "1.5.0",
        ["compute", "guest-console-log"],
        [("container-disk-binary", None), ("volumecontainerdisk-init", None)],
    ),
    (
        "1.6.0",
        ["compute"],
        [
            ("guest-console-log", "Always"),
            ("container-disk-binary", None),
            ("volumecontainerdisk-init", None),
        ],
    ),
]


@pytest.mark.parametrize(("version", "containers", "init_containers"), SHAPES)
async def test_launcher_pods_and_vmis_are_wired_as_kubevirt_does(
    kubevirt_cluster: KubeVirtCluster,
    version: str,
    containers: list[str],
    init_containers: list[tuple[str, str | None]],
) -> None:
    population = kubevirt_cluster.populate(
        ["ns1", "ns2"], nodes=2, vms_per_namespace=2, log_lines=4, kubevirt_version=version
    )
    assert [vmi.node for vmi in population.vmis] == ["node-01", "node-02", "node-01", "node-02"]
    pods = await get_json(kubevirt_cluster.url + "/api/v1/pods", labelSelector="kubevirt.io=virt-launcher")
    vmis = await get_json(kubevirt_cluster.url + "/apis/kubevirt.io/v1/virtualmachineinstances")
    by_uid = {vmi["metadata"]["uid"]: vmi for vmi in vmis["items"]}
    assert len(pods["items"]) == 4
    for pod in pods["items"]:
        meta = pod["metadata"]
        vmi = by_uid[meta["labels"]["kubevirt.io/created-by"]]
        assert (
            meta["name"].startswith(f"virt-launcher-{vmi['metadata']['name']}-")
            and len(meta["name"].split("-")[-1]) == 5
        )
        assert meta["labels"]["vm.kubevirt.io/name"] == vmi["metadata"]["name"]
        assert meta["namespace"] == vmi["metadata"]["namespace"]
        assert meta["annotations"]["kubectl.kubernetes.io/default-container"] == "compute"
        assert pod["spec"]["nodeName"] == vmi["status"]["nodeName"] == meta["labels"]["kubevirt.io/nodeName"]
        assert [c["name"] for c in pod["spec"]["containers"]] == containers
        assert [(c["name"], c.get("restartPolicy")) for c in pod["spec"]["initContainers"]] == init_containers
        assert [s["restartCount"] for s in pod["status"]["containerStatuses"]] == [0] * len(containers)
        init_states = {s["name"]: s["state"] for s in pod["status"]["initContainerStatuses"]}
        assert list(init_states) == [name for name, _ in init_containers]
        for name, policy in init_containers:  # sidecars run, the others have completed
            assert ("running" if policy == "Always" else "terminated") in init_states[name]
        assert vmi["status"]["activePods"] == {meta["uid"]: pod["spec"]["nodeName"]}
        assert vmi["status"]["interfaces"][0]["ipAddress"] == pod["status"]["podIP"]
    handlers = await get_json(
        kubevirt_cluster.url + "/api/v1/namespaces/kubevirt/pods",
        labelSelector="kubevirt.io=virt-handler,app.kubernetes.io/component=kubevirt",
    )
    assert sorted(pod["spec"]["nodeName"] for pod in handlers["items"]) == ["node-01", "node-02"]
    assert kubevirt_cluster.get_object("kubevirt.io/v1", "KubeVirt", "kubevirt", "kubevirt") is not None


async def test_populated_logs_interleave_vms_in_time_order(kubevirt_cluster: KubeVirtCluster) -> None:
    population = kubevirt_cluster.populate(["ns1", "ns2"], nodes=1, vms_per_namespace=2, log_lines=10)
    handler = population.handler_pods["node-01"]
    url = f"{kubevirt_cluster.url}/api/v1/namespaces/kubevirt/pods/{handler.name}/log"
    lines = (await get_text(url, timestamps="true")).splitlines()
    stamps = [line.split(" ", 1)[0] for line in lines]
    assert stamps == sorted(stamps) and len(lines) == 4 * 10 + 10 // 5
    records = [json.loads(line.split(" ", 1)[1]) for line in lines if line.split(" ", 1)[1].startswith("{")]
    about = {(r["namespace"], r["name"]) for r in records if "name" in r}
    assert about == {("ns1", "vm-000"), ("ns1", "vm-001"), ("ns2", "vm-000"), ("ns2", "vm-001")}
    assert all(r["component"] == "virt-handler" and r["timestamp"].endswith("Z") for r in records)
    assert any(not line.split(" ", 1)[1].startswith("{") for line in lines)  # plain klog lines too
    pod = population.launcher_pods[0]
    compute = await get_text(
        f"{kubevirt_cluster.url}/api/v1/namespaces/ns1/pods/{pod.name}/log", container="compute"
    )
    assert all(json.loads(line)["uid"] == population.vmis[0].uid for line in compute.splitlines())
    summary = await get_json(f"{kubevirt_cluster.url}/api/v1/nodes/node-01/proxy/stats/summary")
    rss = {p["podRef"]["name"]: p["containers"][0]["memory"]["rssBytes"] for p in summary["pods"]}
    assert len(rss) == 5 and all(value > 0 for value in rss.values())


async def test_thousand_vmis_on_fifty_nodes(kubevirt_cluster: KubeVirtCluster) -> None:
    started = time.monotonic()
    population = kubevirt_cluster.populate(
        [f"tenant-{i}" for i in range(4)], nodes=50, vms_per_namespace=250, log_lines=5
    )
    elapsed = time.monotonic() - started
    assert len(population.vmis) == 1000 and len(population.handler_pods) == 50
    assert elapsed < 15, f"populate took {elapsed:.1f}s"
    started = time.monotonic()
    pods = await get_json(kubevirt_cluster.url + "/api/v1/pods", labelSelector="kubevirt.io=virt-launcher")
    on_node = await get_json(kubevirt_cluster.url + "/api/v1/pods", fieldSelector="spec.nodeName=node-07")
    assert len(pods["items"]) == 1000 and len(on_node["items"]) == 20 + 1
    assert time.monotonic() - started < 5


def test_sync_use_and_lifecycle(tmp_path: Path) -> None:
    cluster = KubeVirtCluster(seed=42)
    with pytest.raises(RuntimeError):
        _ = cluster.url
    with cluster:
        url = cluster.url
        assert url.startswith("http://127.0.0.1:")
        vmi = cluster.add_vmi("vms", "vm1", "node-1")
        pod = cluster.add_launcher_pod(vmi)
        assert pod.name.startswith("virt-launcher-vm1-") and pod.node == "node-1"
        with pytest.raises(KeyError):
            cluster.append_log("vms", pod.name, "no-such-container", "x")
        with pytest.raises(KeyError):
            cluster.delete_pod("vms", "ghost")
        with pytest.raises(RuntimeError):
            cluster.start()
    cluster.stop()  # idempotent
    with pytest.raises(RuntimeError):
        cluster.add_namespace("late")


async def test_kubeconfig_works_with_kr8s(kubevirt_cluster: KubeVirtCluster, tmp_path: Path) -> None:
    kubevirt_cluster.add_vmi("default", "vm1", "node-1")
    kubeconfig = kubevirt_cluster.write_kubeconfig(tmp_path / "config")
    api = await kr8s.asyncio.api(kubeconfig=str(kubeconfig))
    assert (await api.version())["gitVersion"] == "v1.32.0"
    vmis = [
        vmi
        async for vmi in api.get("virtualmachineinstances", namespace=kr8s.ALL)
        if isinstance(vmi, APIObject)
    ]
    assert [vmi.name for vmi in vmis] == ["vm1"]


async def test_changes_from_other_threads_while_serving(kubevirt_cluster: KubeVirtCluster) -> None:
    vmi = kubevirt_cluster.add_vmi("vms", "vm1", "node-1")
    pod = kubevirt_cluster.add_launcher_pod(vmi)

    def writer(container: str) -> None:
        for index in range(200):
            kubevirt_cluster.append_log("vms", pod.name, container, f"{container} {index}")

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("compute", "guest-console-log")]
    for thread in threads:
        thread.start()
    url = f"{kubevirt_cluster.url}/api/v1/namespaces/vms/pods/{pod.name}/log"
    while any(thread.is_alive() for thread in threads):
        await get_text(url, container="compute", tailLines="1")  # the server keeps answering meanwhile
        await asyncio.sleep(0)
    for thread in threads:
        thread.join()
    compute = (await get_text(url, container="compute")).splitlines()
    assert compute == [f"compute {index}" for index in range(200)]


def test_stop_ends_open_streams_promptly() -> None:
    cluster = KubeVirtCluster().start()
    pod = cluster.add_launcher_pod(cluster.add_vmi("vms", "vm1", "node-1"))
    base = f"{cluster.url}/api/v1/namespaces/vms/pods"
    outcomes: list[bytes] = []

    def stream(url: str) -> None:
        with urllib.request.urlopen(url, timeout=30) as response:
            outcomes.append(response.read())

    urls = [f"{base}/{pod.name}/log?container=compute&follow=true", f"{base}?watch=true&timeoutSeconds=600"]
    readers = [threading.Thread(target=stream, args=(url,)) for url in urls]
    for reader in readers:
        reader.start()
    while sum(record.status == 200 for record in cluster.requests()) < 2:
        time.sleep(0.01)
    started = time.monotonic()
    cluster.stop()
    for reader in readers:
        reader.join(10)
    assert time.monotonic() - started < 2
    follow, watch = sorted(outcomes)  # both ended: the follow had no lines, the watch its initial state
    assert follow == b""
    assert [json.loads(line)["object"]["metadata"]["name"] for line in watch.splitlines()] == [pod.name]


def test_standalone_runner(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    command = [
        sys.executable,
        "-m",
        "kubevirt_test_cluster",
        "--kubeconfig",
        str(kubeconfig),
        "--namespaces",
        "x,y",
        "--nodes",
        "2",
        "--vms",
        "3",
        "--log-lines",
        "2",
    ]
    runner = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None
        url = runner.stdout.readline().removeprefix("url: ").strip()
        assert runner.stdout.readline().strip() == f"kubeconfig: {kubeconfig}"
        assert runner.stdout.readline().strip() == "6 VMIs on 2 nodes in x, y"
        assert f"server: {url}" in kubeconfig.read_text()
        with urllib.request.urlopen(url + "/apis/kubevirt.io/v1/virtualmachineinstances") as response:
            assert len(json.load(response)["items"]) == 6
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=10) == 0
    finally:
        runner.kill()
        runner.wait()


def test_standalone_runner_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kubevirt_test_cluster", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m kubevirt_test_cluster")
    assert "--kubeconfig" in result.stdout


def test_the_package_is_independent_of_the_collector() -> None:
    """The test cluster models upstream Kubernetes and KubeVirt; it never borrows the collector's code."""
    check = (
        "import sys, kubevirt_test_cluster.__main__\n"
        "print(sorted(m for m in sys.modules if m.startswith('stats_log_collector')))"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


async def test_live_migration(kubevirt_cluster: KubeVirtCluster) -> None:
    vmi = kubevirt_cluster.add_vmi("vms", "vm1", "node-1")
    source = kubevirt_cluster.add_launcher_pod(vmi)
    target = kubevirt_cluster.start_migration(vmi, "node-2")
    pods = await get_json(
        kubevirt_cluster.url + "/api/v1/namespaces/vms/pods", labelSelector="vm.kubevirt.io/name=vm1"
    )
    assert sorted((p["metadata"]["name"], p["spec"]["nodeName"]) for p in pods["items"]) == sorted(
        [(source.name, "node-1"), (target.name, "node-2")]
    )
    state = (kubevirt_cluster.get_object("kubevirt.io/v1", "VirtualMachineInstance", "vms", "vm1") or {})[
        "status"
    ]
    assert (
        state["migrationState"]["sourcePod"] == source.name and state["migrationState"]["completed"] is False
    )
    moved = kubevirt_cluster.finish_migration(vmi)
    assert moved.node == "node-2"
    after = kubevirt_cluster.get_object("kubevirt.io/v1", "VirtualMachineInstance", "vms", "vm1") or {}
    assert (
        after["status"]["nodeName"] == "node-2"
        and after["metadata"]["labels"]["kubevirt.io/nodeName"] == "node-2"
    )
    assert [pod["metadata"]["name"] for pod in kubevirt_cluster.launcher_pods(vmi)] == [target.name]
