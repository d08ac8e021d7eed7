"""The test cluster's HTTPS kubelets against kubelet's own behaviour (kubernetes pkg/kubelet/server)."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

import pytest

from kubevirt_test_cluster import KubeVirtCluster
from kubevirt_test_cluster.kubelets import forbidden_message, request_subresources


@pytest.mark.parametrize(
    ("path", "subresources"),
    [
        # auth.go GetRequestAttributes, with KubeletFineGrainedAuthz on (the default since 1.33)
        ("/stats/summary", ["stats"]),
        ("/stats", ["stats"]),
        ("/statsx", ["proxy"]),
        ("/metrics/cadvisor", ["metrics"]),
        ("/logs/syslog", ["log"]),
        ("/checkpoint/ns/pod/c", ["checkpoint"]),
        ("/pods", ["pods", "proxy"]),
        ("/runningpods/", ["pods", "proxy"]),
        ("/healthz", ["healthz", "proxy"]),
        ("/configz", ["configz", "proxy"]),
        ("/exec/ns/pod/c", ["proxy"]),
        ("/run/ns/pod/c", ["proxy"]),
    ],
)
def test_paths_are_authorized_as_kubelet_authorizes_them(path: str, subresources: list[str]) -> None:
    assert request_subresources(path) == subresources


def test_the_forbidden_message_is_kubelets() -> None:
    assert forbidden_message("system:serviceaccount:a:b", "get", ["pods", "proxy"]) == (
        "Forbidden (user=system:serviceaccount:a:b, verb=get, resource=nodes, subresource(s)=[pods proxy])"
    )


def get(cluster: KubeVirtCluster, node: str, path: str, token: str | None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cadata=cluster.ca_pem.decode())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"https://127.0.0.1:{cluster.kubelet_port(node)}{path}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), context=context) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_every_node_has_its_own_kubelet_in_its_node_object(kubevirt_cluster: KubeVirtCluster) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=3, vms_per_namespace=3, log_lines=0)
    ports = set()
    for node in population.nodes:
        body = kubevirt_cluster.get_object("v1", "Node", None, node)
        assert body is not None
        status = body["status"]
        assert status["addresses"] == [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": node},
        ]
        port = status["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        assert port == kubevirt_cluster.kubelet_port(node)
        ports.add(port)
        status_code, body_bytes = get(kubevirt_cluster, node, "/stats/summary", "test-token-not-a-secret")
        assert status_code == 200 and f'"nodeName":"{node}"'.encode() in body_bytes
    assert len(ports) == 3


def test_the_kubelet_authenticates_then_authorizes(kubevirt_cluster: KubeVirtCluster) -> None:
    kubevirt_cluster.add_node("node-1")
    kubevirt_cluster.allow_kubelet_token("stats-only", "reader", ["stats"])
    assert get(kubevirt_cluster, "node-1", "/stats/summary", None) == (401, b"Unauthorized")
    assert get(kubevirt_cluster, "node-1", "/pods", "wrong") == (401, b"Unauthorized")
    assert get(kubevirt_cluster, "node-1", "/stats/summary", "stats-only")[0] == 200
    assert get(kubevirt_cluster, "node-1", "/pods", "stats-only") == (
        403,
        b"Forbidden (user=reader, verb=get, resource=nodes, subresource(s)=[pods proxy])",
    )
    assert get(kubevirt_cluster, "node-1", "/exec/vms/pod/compute", "stats-only")[0] == 403
    assert get(kubevirt_cluster, "node-1", "/stats/nothing", "stats-only") == (404, b"404 page not found\n")
    statuses = [(r.node, r.path, r.status) for r in kubevirt_cluster.kubelet_requests()]
    assert statuses[0] == ("node-1", "/stats/summary", 401) and len(statuses) == 6


def test_a_cluster_without_kubelets_keeps_the_kubelet_port_and_the_proxy() -> None:
    with KubeVirtCluster(kubelets=False) as cluster:
        cluster.add_node("node-1")
        body = cluster.get_object("v1", "Node", None, "node-1")
        assert body is not None and body["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
        url = f"{cluster.url}/api/v1/nodes/node-1/proxy/stats/summary"
        with urllib.request.urlopen(url) as answer:
            assert answer.status == 200
