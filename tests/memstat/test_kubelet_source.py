"""The kubelet source against the test cluster: figures, one Summary request per node, partial samples."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kubevirt_test_cluster import KubeVirtCluster
from stats_log_collector.kube import KubeClient, Vmi
from stats_log_collector.kube.models import Pod
from stats_log_collector.memstat.csvstore import CsvStore
from stats_log_collector.memstat.kubelet_source import KubeletSource, launcher_targets, samples_from_summary
from stats_log_collector.memstat.poller import Poller
from stats_log_collector.memstat.sample import VmPod
from stats_log_collector.memstat.state import LiveState
from tests.memstat.watched import delete_unseen

AT = datetime(2026, 11, 23, 12, 0, 5, tzinfo=UTC)


def summary_paths(cluster: KubeVirtCluster) -> list[str]:
    return [r.path for r in cluster.requests() if r.path.endswith("/proxy/stats/summary")]


# --- pure -----------------------------------------------------------------------------------------------


def test_samples_from_summary_maps_compute_and_reports_missing() -> None:
    summary = {
        "pods": [
            {
                "podRef": {"namespace": "vms", "name": "virt-launcher-a-x"},
                "containers": [
                    {"name": "guest-console-log", "memory": {"rssBytes": 1, "workingSetBytes": 2}},
                    {"name": "compute", "memory": {"rssBytes": 300, "workingSetBytes": 400}},
                ],
            },
            {"podRef": {"namespace": "other", "name": "virt-launcher-a-x"}, "containers": []},
        ]
    }
    found = VmPod("vms", "a", "virt-launcher-a-x", "n1")
    gone = VmPod("other", "a", "virt-launcher-a-x", "n1")
    samples, missing = samples_from_summary(summary, [found, gone], AT)
    assert missing == [gone]
    [sample] = samples
    assert (sample.namespace, sample.vm, sample.pod, sample.node) == ("vms", "a", "virt-launcher-a-x", "n1")
    assert (sample.source, sample.process, sample.pid) == ("kubelet", "compute", None)
    assert (sample.rss_bytes, sample.working_set_bytes, sample.timestamp) == (300, 400, AT)


# A real Summary answer (elastic/beats' fixture; source in tests/fixtures/kubelet/README.md).
REAL_SUMMARY = Path(__file__).parents[1] / "fixtures" / "kubelet" / "elastic-beats-stats_summary.json"
REAL_POD = VmPod(
    "default", "vm-a", "nginx-deployment-2303442956-pcqfc", "gke-beats-default-pool-a5b33e2e-hdww"
)


def test_a_real_summary_answer_without_launchers_gives_no_sample() -> None:
    summary = json.loads(REAL_SUMMARY.read_text())
    launcher = VmPod("default", "vm-b", "virt-launcher-vm-b-x7k2p", "gke-beats-default-pool-a5b33e2e-hdww")
    # The node's kubelet, its system containers and the nginx pod (no "compute" container) are not VMs.
    samples, missing = samples_from_summary(summary, [REAL_POD, launcher], AT)
    assert (samples, missing) == ([], [REAL_POD, launcher])
    assert samples_from_summary(summary, [], AT) == ([], [])


def test_the_figures_of_a_real_summary_answer_are_read_from_their_real_shape() -> None:
    summary = json.loads(REAL_SUMMARY.read_text())
    [pod] = summary["pods"]
    [container] = pod["containers"]
    container["name"] = "compute"  # the only change: this pod now looks like a launcher's
    other_namespace = VmPod("kube-system", "vm-a", REAL_POD.pod, REAL_POD.node)
    samples, missing = samples_from_summary(summary, [REAL_POD, other_namespace], AT)
    assert missing == [other_namespace]
    [sample] = samples
    assert (sample.namespace, sample.vm, sample.pod, sample.process) == (
        "default",
        "vm-a",
        REAL_POD.pod,
        "compute",
    )
    # rssBytes and workingSetBytes of the container, not the node's or the kubelet's
    assert (sample.rss_bytes, sample.working_set_bytes) == (1_409_024, 1_454_080)


def _pod(name: str, node: str, vmi: Vmi, phase: str = "Running") -> Pod:
    labels = {"kubevirt.io/created-by": vmi.uid, "vm.kubevirt.io/name": vmi.name}
    return Pod(vmi.namespace, name, f"uid-{name}", node, phase, ("compute",), labels=labels)


def test_launcher_targets_picks_the_running_active_pod() -> None:
    migrating = Vmi("vms", "a", "uid-a", "n1", "Running")
    plain = Vmi("vms", "b", "uid-b", "n2", "Running")
    pending = Vmi("vms", "c", "uid-c", "n2", "Scheduling")
    pods = [
        _pod("pa-target", "n3", migrating),
        _pod("pa-source", "n1", migrating),
        _pod("pb", "n2", plain),
        _pod("pc", "n2", pending, phase="Pending"),
    ]
    assert launcher_targets([migrating, plain, pending], pods) == [
        VmPod("vms", "a", "pa-source", "n1"),
        VmPod("vms", "b", "pb", "n2"),
    ]


# --- against the cluster --------------------------------------------------------------------------------


async def test_figures_are_what_was_set_with_one_summary_per_node(
    kubevirt_cluster: KubeVirtCluster,
    client: KubeClient,
    inventory: Callable[..., Any],
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=3, vms_per_namespace=7, log_lines=0)
    expected = {}
    for index, vmi in enumerate(population.vmis):
        pod = population.launcher_of(vmi)
        rss, working_set = 100_000_000 + index, 120_000_000 + index
        kubevirt_cluster.set_container_memory("vms", pod.name, "compute", rss, working_set)
        expected[vmi.name] = (pod.name, vmi.node, rss, working_set)
    kubevirt_cluster.clear_requests()

    samples = await KubeletSource(client, await inventory(["vms"])).poll(AT)

    got = {s.vm: (s.pod, s.node, s.rss_bytes, s.working_set_bytes) for s in samples}
    assert got == expected
    assert all(s.timestamp == AT and s.process == "compute" for s in samples)
    assert sorted(summary_paths(kubevirt_cluster)) == [
        f"/api/v1/nodes/{node}/proxy/stats/summary" for node in population.nodes
    ]
    # a VMI list and a pod list, each followed by a watch; one summary per node
    assert len(kubevirt_cluster.requests()) == 2 * 2 + 3


async def test_an_unreachable_node_is_skipped_and_the_others_sampled(
    kubevirt_cluster: KubeVirtCluster,
    client: KubeClient,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    inventory: Callable[..., Any],
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=3, vms_per_namespace=6, log_lines=0)
    dead = population.nodes[1]
    kubevirt_cluster.set_node_reachable(dead, False)
    source = KubeletSource(client, await inventory(["vms"]))
    state = LiveState()
    with caplog.at_level(logging.WARNING):
        samples = await Poller(source, CsvStore(tmp_path), state, 5).poll_once(AT)
    assert {s.vm for s in samples} == {v.name for v in population.vmis if v.node != dead}
    on_dead = sum(v.node == dead for v in population.vmis)
    assert source.skipped == on_dead > 0 and state.collector.health.failures == on_dead
    assert state.ready  # a partial poll is a good poll
    skipped = [r for r in caplog.records if r.getMessage() == "node skipped for this sample"]
    assert [getattr(r, "node", None) for r in skipped] == [dead]


async def test_a_pod_vanished_after_the_list_is_skipped(
    kubevirt_cluster: KubeVirtCluster,
    client: KubeClient,
    caplog: pytest.LogCaptureFixture,
    inventory: Callable[..., Any],
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=2, vms_per_namespace=4, log_lines=0)
    gone = population.vmis[0]
    source = KubeletSource(client, await inventory(["vms"]))
    delete_unseen(kubevirt_cluster, "vms", population.launcher_of(gone).name)
    with caplog.at_level(logging.WARNING):
        samples = await source.poll(AT)
    assert {s.vm for s in samples} == {v.name for v in population.vmis[1:]} and source.skipped == 1
    skipped = [r for r in caplog.records if "not in the node summary" in r.getMessage()]
    assert [getattr(r, "vm", None) for r in skipped] == [gone.name]


async def test_several_namespaces_and_all_namespaces(
    kubevirt_cluster: KubeVirtCluster,
    client: KubeClient,
    inventory: Callable[..., Any],
) -> None:
    population = kubevirt_cluster.populate(("a", "b", "c"), nodes=2, vms_per_namespace=2, log_lines=0)
    every = {(v.namespace, v.name) for v in population.vmis}

    samples = await KubeletSource(client, await inventory(["a", "b"])).poll(AT)
    assert {(s.namespace, s.vm) for s in samples} == {k for k in every if k[0] in ("a", "b")}

    kubevirt_cluster.clear_requests()
    samples = await KubeletSource(client, await inventory(["*"])).poll(AT)
    assert {(s.namespace, s.vm) for s in samples} == every
    lists = [r.path for r in kubevirt_cluster.requests() if "proxy" not in r.path and not r.param("watch")]
    assert sorted(lists) == ["/api/v1/pods", "/apis/kubevirt.io/v1/virtualmachineinstances"]
    assert len(summary_paths(kubevirt_cluster)) == 2
