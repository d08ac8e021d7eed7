"""The test cluster's watches behave as kube-apiserver's: checked with the real kubectl and raw HTTP.

kubectl (``get --watch``) lists, then watches from the list's resourceVersion and prints each event;
what it prints is what a real cluster makes it print. Bookmarks, 410 and dropped connections are checked
on the wire, since kubectl does not ask for bookmarks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubevirt_test_cluster import KubeVirtCluster
from kubevirt_test_cluster.resources import by_kind
from tests.helpers import wait_for

KUBECTL = shutil.which("kubectl")
PODS = "/api/v1/namespaces/vms/pods"


@pytest.fixture
def cluster(kubevirt_cluster: KubeVirtCluster) -> KubeVirtCluster:
    kubevirt_cluster.add_namespace("vms")
    kubevirt_cluster.add_namespace("other")
    kubevirt_cluster.add_node("node1")
    return kubevirt_cluster


def json_stream(text: str) -> list[Any]:
    """The JSON documents kubectl printed one after the other (each pretty-printed over many lines)."""
    decoder, found, index = json.JSONDecoder(), [], 0
    while (index := _skip_space(text, index)) < len(text):
        document, index = decoder.raw_decode(text, index)
        found.append(document)
    return found


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index].isspace():
        index += 1
    return index


@pytest.fixture
def kubectl_watch(cluster: KubeVirtCluster, tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], Path]:
        assert KUBECTL is not None
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        out = tmp_path / f"watch-{len(started)}.json"
        command = [KUBECTL, f"--kubeconfig={kubeconfig}", f"--cache-dir={tmp_path / 'cache'}", *args]
        process = subprocess.Popen(command, stdout=out.open("w"), stderr=subprocess.PIPE, text=True)
        started.append(process)
        return process, out

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


def _documents(out: Path) -> list[Any]:
    try:
        return json_stream(out.read_text())
    except ValueError:  # a document half written
        return []


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_get_watch_prints_every_event_in_order(cluster: KubeVirtCluster, kubectl_watch: Any) -> None:
    before = cluster.add_launcher_pod(cluster.add_vmi("vms", "before", "node1"))
    process, out = kubectl_watch("get", "pods", "-n", "vms", "--watch", "-o", "json", "--output-watch-events")
    wait_for(lambda: len(_documents(out)) == 1, "kubectl's first event")
    vm = cluster.add_vmi("vms", "during", "node1")
    during = cluster.add_launcher_pod(vm)
    cluster.add_launcher_pod(cluster.add_vmi("other", "unwatched", "node1"))
    cluster.set_pod_phase("vms", during.name, "Failed")
    cluster.delete_pod("vms", before.name)
    wait_for(
        lambda: any(
            d["type"] == "DELETED" and d["object"]["metadata"]["name"] == before.name for d in _documents(out)
        ),
        "kubectl to print the deletion",
    )
    events = [(d["type"], d["object"]["metadata"]["name"]) for d in _documents(out)]
    assert events[0] == ("ADDED", before.name)  # the list, printed as ADDED
    assert events[1] == ("ADDED", during.name)
    assert ("MODIFIED", during.name) in events
    assert events[-1] == ("DELETED", before.name)
    assert all(name != "unwatched" and not name.startswith("virt-launcher-unwatched") for _, name in events)
    phases = [
        d["object"]["status"]["phase"]
        for d in _documents(out)
        if d["object"]["metadata"]["name"] == during.name
    ]
    assert phases[-1] == "Failed"
    [watch] = [r for r in cluster.requests() if r.path == PODS and r.param("watch") in ("true", "1")]
    listed = [r for r in cluster.requests() if r.path == PODS and r.param("watch") is None]
    assert listed and watch.param("resourceVersion") not in (None, "", "0")  # from the list's version
    assert process.poll() is None


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_get_watch_prints_objects_without_event_types(
    cluster: KubeVirtCluster, kubectl_watch: Any
) -> None:
    first = cluster.add_launcher_pod(cluster.add_vmi("vms", "first", "node1"))
    _, out = kubectl_watch("get", "pods", "-n", "vms", "--watch", "-o", "json")
    wait_for(lambda: len(_documents(out)) == 1, "kubectl's first object")
    second = cluster.add_launcher_pod(cluster.add_vmi("vms", "second", "node1"))
    wait_for(lambda: len(_documents(out)) == 2, "kubectl's second object")
    documents = _documents(out)
    assert [d["kind"] for d in documents] == ["Pod", "Pod"]
    assert [d["metadata"]["name"] for d in documents] == [first.name, second.name]


def _watch(cluster: KubeVirtCluster, query: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{cluster.url}{PODS}?watch=true&{query}", timeout=timeout) as response:
        assert response.status == 200
        return [json.loads(line) for line in response.read().splitlines() if line.strip()]


def test_bookmarks_carry_only_the_version_and_come_before_the_timeout(cluster: KubeVirtCluster) -> None:
    cluster.set_bookmark_period(0.4)
    cluster.add_vmi("vms", "vm", "node1")
    version = cluster.resource_version
    began = time.monotonic()
    events = _watch(cluster, f"resourceVersion={version}&allowWatchBookmarks=true&timeoutSeconds=3")
    assert 2.9 < time.monotonic() - began < 4.0
    assert events and {event["type"] for event in events} == {"BOOKMARK"}
    assert all(
        event["object"] == {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": str(version)}}
        for event in events
    )
    assert len(events) >= 3  # every 0.4 s until 2 s before the end, then the last one


def test_no_bookmarks_unless_asked(cluster: KubeVirtCluster) -> None:
    cluster.set_bookmark_period(0.2)
    assert _watch(cluster, f"resourceVersion={cluster.resource_version}&timeoutSeconds=1") == []


def test_a_bookmark_before_the_deadline_even_with_the_default_period(cluster: KubeVirtCluster) -> None:
    events = _watch(
        cluster, f"resourceVersion={cluster.resource_version}&allowWatchBookmarks=true&timeoutSeconds=3"
    )
    assert [event["type"] for event in events] == ["BOOKMARK"]


def test_a_compacted_version_gets_a_410_error_event(cluster: KubeVirtCluster) -> None:
    old = cluster.resource_version
    cluster.add_launcher_pod(cluster.add_vmi("vms", "vm", "node1"))
    compacted = cluster.compact()
    [event] = _watch(cluster, f"resourceVersion={old}&timeoutSeconds=5")
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
    assert event["object"]["message"] == f"too old resource version: {old} ({compacted})"
    assert _watch(cluster, f"resourceVersion={compacted}&timeoutSeconds=1") == []  # that one is still fine


def test_dropped_watches_see_their_connection_cut(cluster: KubeVirtCluster) -> None:
    version = cluster.resource_version
    url = f"{cluster.url}{PODS}?watch=true&resourceVersion={version}&timeoutSeconds=30"
    with urllib.request.urlopen(url, timeout=10) as response:
        wait_for(lambda: cluster.drop_watches() == 1, "the watch to be open")
        with pytest.raises(Exception, match=r"IncompleteRead|Connection|reset|chunk"):
            response.read()


def test_a_list_gives_its_version_and_a_compacted_continue_token_is_410(cluster: KubeVirtCluster) -> None:
    for index in range(3):
        cluster.add_vmi("vms", f"vm{index}", "node1")
    vmis = f"{cluster.url}/apis/kubevirt.io/v1/namespaces/vms/virtualmachineinstances"
    with urllib.request.urlopen(f"{vmis}?limit=2") as response:
        page = json.loads(response.read())
    assert page["metadata"]["resourceVersion"] == str(cluster.resource_version)
    assert page["metadata"]["remainingItemCount"] == 1
    cluster.add_vmi("vms", "later", "node1")
    cluster.compact()
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{vmis}?limit=2&continue={page['metadata']['continue']}")
    assert error.value.code == 410
    assert json.loads(error.value.read())["reason"] == "Expired"


def test_an_object_leaving_or_entering_the_selection_is_deleted_or_added(cluster: KubeVirtCluster) -> None:
    pod = cluster.add_launcher_pod(cluster.add_vmi("vms", "vm", "node1"))
    version = cluster.resource_version
    pods = by_kind("v1", "Pod")

    def relabel(api: Any, labels: dict[str, str]) -> None:
        current = api.store.require(pods, "vms", pod.name)
        api.store.update(pods, current, {**current, "metadata": {**current["metadata"], "labels": labels}})

    original = cluster.get_object("v1", "Pod", "vms", pod.name)
    assert original is not None
    cluster.call(lambda api: relabel(api, {"other": "x"}))  # leaves kubevirt.io=virt-launcher
    cluster.call(lambda api: relabel(api, original["metadata"]["labels"]))  # and comes back
    events = _watch(
        cluster, f"resourceVersion={version}&labelSelector=kubevirt.io%3Dvirt-launcher&timeoutSeconds=1"
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("DELETED", pod.name),
        ("ADDED", pod.name),
    ]
    deleted, added = events
    assert (
        deleted["object"]["metadata"]["labels"] == original["metadata"]["labels"]
    )  # its last matching state
    assert int(deleted["object"]["metadata"]["resourceVersion"]) == version + 1
    assert int(added["object"]["metadata"]["resourceVersion"]) == version + 2
