"""Reading kubelets directly: where a Node's kubelet is, TLS, credentials, and every way it can fail.

Against the test cluster's HTTPS kubelets (one per node, certificates from the cluster CA, the token
table standing for RBAC), over real TLS; the Node objects' hostile shapes are checked purely.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubevirt_test_cluster import KubeVirtCluster
from kubevirt_test_cluster.pki import CertificateAuthority
from stats_log_collector.config import ConfigError
from stats_log_collector.kube import KubeClient
from stats_log_collector.kube.kubelet import (
    BAD_NODE,
    FORBIDDEN,
    NODE_UNKNOWN,
    REFUSED,
    TIMEOUT,
    TLS,
    UNAUTHORIZED,
    DirectReader,
    KubeletEndpoint,
    KubeletUnreadable,
    NodeDirectory,
    ProxyReader,
    kubelet_endpoint,
    kubelet_ssl_context,
)
from stats_log_collector.kube.models import ApiCredentials
from stats_log_collector.kube.retry import RetryPolicy
from stats_log_collector.settings import KubeletSettings, KubeSettings

TYPES = ("InternalIP", "ExternalIP", "Hostname")
NO_STATS_USER = "system:serviceaccount:monitoring:memstat"


def node(addresses: Any = None, endpoints: Any = None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if addresses is not None:
        status["addresses"] = addresses
    if endpoints is not None:
        status["daemonEndpoints"] = endpoints
    return {"metadata": {"name": "n1"}, "status": status}


def port(value: Any) -> dict[str, Any]:
    return {"kubeletEndpoint": {"Port": value}}


# --- where the kubelet listens (pure) -----------------------------------------------------------------------


def test_the_address_follows_the_preferred_types_and_the_port_the_node_status() -> None:
    addresses = [
        {"type": "Hostname", "address": "worker-1"},
        {"type": "ExternalIP", "address": "203.0.113.7"},
        {"type": "InternalIP", "address": "10.0.0.5"},
        {"type": "InternalIP", "address": "10.0.0.6"},
    ]
    assert kubelet_endpoint(node(addresses, port(10250)), TYPES) == KubeletEndpoint("10.0.0.5", 10250)
    assert kubelet_endpoint(node(addresses, port(1)), ("Hostname", "InternalIP")).host == "worker-1"
    assert kubelet_endpoint(node(addresses, port(10250)), ("ExternalIP",)).url == (
        "https://203.0.113.7:10250/stats/summary"
    )
    ipv6 = node([{"type": "InternalIP", "address": "fd00::5"}], port(10250))
    assert kubelet_endpoint(ipv6, TYPES).url == "https://[fd00::5]:10250/stats/summary"


@pytest.mark.parametrize(
    ("hostile", "problem"),
    [
        (node(None, port(10250)), "no usable address of the types InternalIP,ExternalIP,Hostname"),
        (node([], port(10250)), "no usable address"),
        (node("10.0.0.5", port(10250)), "no usable address"),
        (node([None, 7, {"type": "InternalIP"}], port(10250)), "no usable address"),
        (node([{"type": "InternalDNS", "address": "a.b"}], port(10250)), "no usable address"),
        (node([{"type": "InternalIP", "address": "10.0.0.5/evil"}], port(10250)), "'10.0.0.5/evil'"),
        (node([{"type": "InternalIP", "address": "user@10.0.0.5"}], port(10250)), "'user@10.0.0.5'"),
        (node([{"type": "InternalIP", "address": "10.0.0.5\nX: y"}], port(10250)), "'10.0.0.5\\nX: y'"),
        (node([{"type": "Hostname", "address": "a" * 300}], port(10250)), "..."),
        (node([{"type": "InternalIP", "address": "fe80::1%eth0"}], port(10250)), "'fe80::1%eth0'"),
        (node([{"type": "InternalIP", "address": "10.0.0.5:99"}], port(10250)), "'10.0.0.5:99'"),
        (node([{"type": "InternalIP", "address": "10.0.0.5"}]), "Port is not a port: None"),
        (node([{"type": "InternalIP", "address": "10.0.0.5"}], {}), "Port is not a port: None"),
        (node([{"type": "InternalIP", "address": "10.0.0.5"}], "x"), "Port is not a port: None"),
        (node([{"type": "InternalIP", "address": "10.0.0.5"}], port("10250")), "Port is not a port: '10250'"),
        (node([{"type": "InternalIP", "address": "10.0.0.5"}], port(0)), "Port is not a port: 0"),
        (node([{"type": "InternalIP", "address": "10.0.0.5"}], port(70000)), "Port is not a port: 70000"),
        (node([{"type": "InternalIP", "address": "10.0.0.5"}], port(True)), "Port is not a port: True"),
        ({"status": None}, "no usable address"),
        ([], "no usable address"),
    ],
)
def test_a_hostile_node_object_fails_with_what_is_wrong(hostile: Any, problem: str) -> None:
    with pytest.raises(KubeletUnreadable) as caught:
        kubelet_endpoint(hostile, TYPES)
    assert caught.value.reason == BAD_NODE
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_address_is_passed_over_for_the_next_one() -> None:
    addresses = [
        {"type": "InternalIP", "address": "10.0.0.5/../../x"},
        {"type": "Hostname", "address": "worker-1.example.org"},
    ]
    assert kubelet_endpoint(node(addresses, port(10250)), TYPES).host == "worker-1.example.org"


# --- TLS settings ---------------------------------------------------------------------------------------


def test_insecure_tls_and_a_ca_file_cannot_go_together(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(CertificateAuthority().cert_pem)
    settings = KubeletSettings(kubelet_ca_file=ca, kubelet_insecure_tls=True)
    with pytest.raises(ConfigError) as caught:
        kubelet_ssl_context(settings, ApiCredentials(None, None, None, None))
    assert caught.value.variable == "KUBELET_INSECURE_TLS"


def test_a_ca_file_that_is_not_a_certificate_is_a_configuration_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError) as caught:
        kubelet_ssl_context(KubeletSettings(kubelet_ca_file=bad), ApiCredentials(None, None, None, None))
    assert caught.value.variable == "KUBELET_CA_FILE" and str(bad) in str(caught.value)


def test_the_token_never_shows_in_the_credentials_repr() -> None:
    assert "s3cret" not in repr(ApiCredentials("s3cret", None, None, None))


# --- against the test cluster's kubelets ------------------------------------------------------------------


async def connect(cluster: KubeVirtCluster, tmp_path: Path, **kubeconfig: Any) -> KubeClient:
    config = cluster.write_kubeconfig(tmp_path / "kubeconfig", **kubeconfig)
    settings = KubeSettings(kubeconfig=config, kube_request_timeout_secs=5.0, kube_retries=1)
    return await KubeClient.connect(settings, RetryPolicy(retries=1, base_delay=0.01, max_delay=0.02))


@pytest.fixture
async def admin(kubevirt_cluster: KubeVirtCluster, tmp_path: Path) -> AsyncIterator[KubeClient]:
    client = await connect(kubevirt_cluster, tmp_path)
    yield client
    await client.close()


async def read(
    client: KubeClient, node: str, request_timeout: float = 5.0, **settings: Any
) -> dict[str, Any]:
    reader = await DirectReader.connect(
        client, KubeletSettings(**settings), KubeSettings(kube_request_timeout_secs=request_timeout)
    )
    try:
        return await reader.summary(node)
    finally:
        await reader.close()


async def failure(
    client: KubeClient, node: str, request_timeout: float = 5.0, **settings: Any
) -> KubeletUnreadable:
    with pytest.raises(KubeletUnreadable) as caught:
        await read(client, node, request_timeout, **settings)
    return caught.value


async def test_the_summary_is_read_from_the_kubelet_with_the_cluster_ca(
    kubevirt_cluster: KubeVirtCluster, admin: KubeClient
) -> None:
    vmi = kubevirt_cluster.add_vmi("vms", "vm1", "node-1")
    pod = kubevirt_cluster.add_launcher_pod(vmi)
    kubevirt_cluster.set_container_memory("vms", pod.name, "compute", 300 << 20, 320 << 20)
    kubevirt_cluster.clear_requests()
    summary = await read(admin, "node-1")
    [found] = [p for p in summary["pods"] if p["podRef"]["name"] == pod.name]
    compute = next(c for c in found["containers"] if c["name"] == "compute")
    assert (compute["memory"]["rssBytes"], compute["memory"]["workingSetBytes"]) == (300 << 20, 320 << 20)
    # The API server was asked for the nodes only; the Summary came from the kubelet itself.
    assert [r.path for r in kubevirt_cluster.requests()] == ["/api/v1/nodes"]
    [request] = kubevirt_cluster.kubelet_requests()
    assert (request.node, request.path, request.status) == ("node-1", "/stats/summary", 200)


async def test_a_kubelet_certificate_of_another_ca_is_a_tls_error(
    kubevirt_cluster: KubeVirtCluster, admin: KubeClient, tmp_path: Path
) -> None:
    kubevirt_cluster.add_node("node-1")
    kubevirt_cluster.add_node("node-2")
    kubevirt_cluster.use_own_kubelet_ca("node-2")
    assert (await read(admin, "node-1"))["node"]["nodeName"] == "node-1"
    error = await failure(admin, "node-2")
    assert error.reason == TLS
    assert "certificate verify failed" in str(error) and "KUBELET_CA_FILE" in str(error)
    assert kubevirt_cluster.kubelet_requests() == [kubevirt_cluster.kubelet_requests()[0]]  # none got through
    wrong = tmp_path / "wrong-ca.pem"
    wrong.write_bytes(CertificateAuthority("another").cert_pem)
    assert (await failure(admin, "node-1", kubelet_ca_file=wrong)).reason == TLS


async def test_kubelet_ca_file_verifies_a_kubelet_of_its_own_ca(
    kubevirt_cluster: KubeVirtCluster, admin: KubeClient, tmp_path: Path
) -> None:
    kubevirt_cluster.add_node("node-1")
    own = tmp_path / "node-1-ca.pem"
    own.write_bytes(kubevirt_cluster.use_own_kubelet_ca("node-1"))
    assert (await read(admin, "node-1", kubelet_ca_file=own))["node"]["nodeName"] == "node-1"


async def test_insecure_tls_reads_a_kubelet_no_ca_vouches_for(
    kubevirt_cluster: KubeVirtCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kubevirt_cluster.add_node("node-1")
    kubevirt_cluster.use_own_kubelet_ca("node-1")
    client = await connect(kubevirt_cluster, tmp_path, with_ca=False)
    try:
        assert (await failure(client, "node-1")).reason == TLS  # the system trust store knows no such CA
        assert (await read(client, "node-1", kubelet_insecure_tls=True))["node"]["nodeName"] == "node-1"
    finally:
        await client.close()
    assert any("KUBELET_INSECURE_TLS=true" in r.getMessage() for r in caplog.records)


async def test_a_token_without_nodes_stats_is_forbidden_and_no_token_unauthorized(
    kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    kubevirt_cluster.add_node("node-1")
    kubevirt_cluster.allow_kubelet_token("no-stats", NO_STATS_USER, ["metrics", "proxy"])
    client = await connect(kubevirt_cluster, tmp_path, token="no-stats")
    try:
        error = await failure(client, "node-1")
    finally:
        await client.close()
    assert (error.reason, error.status) == (FORBIDDEN, 403)
    assert f"Forbidden (user={NO_STATS_USER}, verb=get, resource=nodes, subresource(s)=[stats])" in str(error)
    assert "get nodes/stats" in str(error)
    for number, token in enumerate((None, "nobody-knows-this")):
        # a kubeconfig of its own each: kr8s keeps one client per kubeconfig path
        client = await connect(kubevirt_cluster, tmp_path / str(number), token=token)
        try:
            error = await failure(client, "node-1")
        finally:
            await client.close()
        assert (error.reason, error.status) == (UNAUTHORIZED, 401)
        assert ("we have none" if token is None else "webhook") in str(error)


async def test_a_rotated_token_is_read_again_after_a_401(
    kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    """A ServiceAccount token is rotated in its file (kubelet refreshes projected tokens hourly): the
    first 401 reads the credentials again, and the new token is used."""
    kubevirt_cluster.add_node("node-1")
    kubevirt_cluster.allow_kubelet_token("rotated", "system:serviceaccount:monitoring:memstat", ["stats"])
    client = await connect(kubevirt_cluster, tmp_path, token="expired")
    reader = await DirectReader.connect(client, KubeletSettings(), KubeSettings(kube_request_timeout_secs=5))
    try:
        kubevirt_cluster.write_kubeconfig(tmp_path / "kubeconfig", token="rotated")
        assert (await reader.summary("node-1"))["node"]["nodeName"] == "node-1"
    finally:
        await reader.close()
        await client.close()
    assert [r.status for r in kubevirt_cluster.kubelet_requests()] == [401, 200]


async def test_a_kubeconfig_client_certificate_authenticates_to_the_kubelet(
    kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    """A kubeconfig with a client certificate (kubeadm's admin.conf, kind's) and no token: the kubelet
    authenticates the certificate's CN, and RBAC decides for that user."""
    kubevirt_cluster.add_node("node-1")
    kubevirt_cluster.allow_kubelet_user("kubernetes-admin", ["stats"])
    pair = kubevirt_cluster.issue_client_certificate("kubernetes-admin", ("kubeadm:cluster-admins",))
    client = await connect(kubevirt_cluster, tmp_path, token=None, client_cert=pair)
    try:
        assert (await read(client, "node-1"))["node"]["nodeName"] == "node-1"
        kubevirt_cluster.allow_kubelet_user("kubernetes-admin", [])
        error = await failure(client, "node-1")
    finally:
        await client.close()
    assert "Forbidden (user=kubernetes-admin, verb=get" in str(error)


async def test_a_kubelet_that_does_not_answer_times_out(
    kubevirt_cluster: KubeVirtCluster, admin: KubeClient
) -> None:
    kubevirt_cluster.add_node("node-1")
    kubevirt_cluster.set_node_reachable("node-1", False)
    error = await failure(admin, "node-1", request_timeout=0.5)
    assert error.reason == TIMEOUT and "0.5 s" in str(error)
    kubevirt_cluster.set_node_reachable("node-1")
    assert (await read(admin, "node-1"))["node"]["nodeName"] == "node-1"


def patch_node_status(cluster: KubeVirtCluster, name: str, status: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"{cluster.url}/api/v1/nodes/{name}/status",
        data=json.dumps({"status": status}).encode(),
        method="PATCH",
        headers={"Content-Type": "application/merge-patch+json"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 200


async def test_a_port_nobody_listens_on_is_refused(
    kubevirt_cluster: KubeVirtCluster, admin: KubeClient
) -> None:
    kubevirt_cluster.add_node("node-1")
    patch_node_status(kubevirt_cluster, "node-1", {"daemonEndpoints": {"kubeletEndpoint": {"Port": 9}}})
    error = await failure(admin, "node-1")
    assert error.reason == REFUSED and "KUBELET_ACCESS=proxy" in str(error)


async def test_a_hostile_node_object_in_the_api_fails_that_node_only(
    kubevirt_cluster: KubeVirtCluster, admin: KubeClient
) -> None:
    for name in ("good", "no-address", "no-endpoints", "bad-port", "at-sign"):
        kubevirt_cluster.add_node(name)
    patch_node_status(kubevirt_cluster, "no-address", {"addresses": []})
    patch_node_status(kubevirt_cluster, "no-endpoints", {"daemonEndpoints": None})
    patch_node_status(kubevirt_cluster, "bad-port", {"daemonEndpoints": {"kubeletEndpoint": {"Port": "x"}}})
    patch_node_status(
        kubevirt_cluster, "at-sign", {"addresses": [{"type": "InternalIP", "address": "evil@127.0.0.1/x"}]}
    )
    reader = await DirectReader.connect(admin, KubeletSettings(), KubeSettings(kube_request_timeout_secs=5))
    try:
        for name in ("no-address", "no-endpoints", "bad-port", "at-sign"):
            with pytest.raises(KubeletUnreadable) as caught:
                await reader.summary(name)
            assert caught.value.reason == BAD_NODE, name
        assert (await reader.summary("good"))["node"]["nodeName"] == "good"
    finally:
        await reader.close()
    assert {r.node for r in kubevirt_cluster.kubelet_requests()} == {"good"}


async def test_nodes_are_listed_once_and_again_for_a_node_not_in_the_list(
    kubevirt_cluster: KubeVirtCluster, admin: KubeClient
) -> None:
    kubevirt_cluster.add_node("node-1")
    now = [0.0]
    nodes = NodeDirectory(admin, max_age=300, min_relist=10, clock=lambda: now[0])
    assert (await nodes.get("node-1"))["metadata"]["name"] == "node-1"
    await nodes.get("node-1")
    assert nodes.lists == 1
    kubevirt_cluster.add_node("node-2")
    with pytest.raises(KubeletUnreadable) as caught:  # listed a moment ago: not again yet
        await nodes.get("node-2")
    assert caught.value.reason == NODE_UNKNOWN and nodes.lists == 1
    now[0] = 11.0
    assert (await nodes.get("node-2"))["metadata"]["name"] == "node-2"
    assert nodes.lists == 2
    now[0] = 400.0
    await nodes.get("node-1")
    assert nodes.lists == 3


async def test_a_node_list_refused_names_the_missing_permission(
    kubevirt_cluster: KubeVirtCluster, admin: KubeClient
) -> None:
    kubevirt_cluster.add_node("node-1")
    kubevirt_cluster.inject(r"^/api/v1/nodes$", 403, times=None)
    with pytest.raises(KubeletUnreadable) as caught:
        await NodeDirectory(admin).get("node-1")
    assert caught.value.reason == FORBIDDEN and "RBAC `list nodes`" in str(caught.value)
    kubevirt_cluster.clear_faults()
    kubevirt_cluster.inject(r"^/api/v1/nodes$", 404, times=None)  # any other failure: the node is unknown
    with pytest.raises(KubeletUnreadable) as caught:
        await NodeDirectory(admin).get("node-1")
    assert caught.value.reason == NODE_UNKNOWN


async def test_the_proxy_reader_still_reads_through_the_api_server(
    kubevirt_cluster: KubeVirtCluster, admin: KubeClient
) -> None:
    kubevirt_cluster.add_node("node-1")
    reader = ProxyReader(admin)
    assert (await reader.summary("node-1"))["node"]["nodeName"] == "node-1"
    assert kubevirt_cluster.kubelet_requests() == []
    kubevirt_cluster.inject(r"/proxy/stats/summary$", 403, times=None)  # kr8s retries a 403 once
    with pytest.raises(KubeletUnreadable) as caught:
        await reader.summary("node-1")
    assert caught.value.reason == FORBIDDEN and "get nodes/proxy" in str(caught.value)


def test_the_test_kubelet_serves_its_node_name_in_its_certificate(kubevirt_cluster: KubeVirtCluster) -> None:
    """The serving certificate names the node (DNS) and 127.0.0.1 (IP), as a bootstrapped one does."""
    kubevirt_cluster.add_node("node-1")
    context = ssl.create_default_context(cadata=kubevirt_cluster.ca_pem.decode())
    request = urllib.request.Request(f"https://127.0.0.1:{kubevirt_cluster.kubelet_port('node-1')}/healthz")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, context=context)
    assert (caught.value.code, caught.value.read()) == (401, b"Unauthorized")
