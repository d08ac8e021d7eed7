"""The test cluster answers lists, gets, patches and discovery as a real API server does.

Everything goes over real sockets: raw aiohttp requests to see exact bodies and codes, kr8s to
prove the client the collector uses is satisfied.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import kr8s
import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import APIObject

from kubevirt_test_cluster import KubeVirtCluster


async def get_json(url: str, **params: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
        return response.status, await response.json()


def names(body: dict[str, Any]) -> set[str]:
    return {item["metadata"]["name"] for item in body["items"]}


@pytest.fixture
def small_cluster(kubevirt_cluster: KubeVirtCluster) -> KubeVirtCluster:
    """In ``a``: vm-a (node-1), vm-b (node-2, pod Pending); in ``b``: vm-a (node-1); two handlers."""
    cluster = kubevirt_cluster
    for namespace, vm, node in (("a", "vm-a", "node-1"), ("a", "vm-b", "node-2"), ("b", "vm-a", "node-1")):
        vmi = cluster.add_vmi(namespace, vm, node)
        cluster.add_launcher_pod(vmi, name=f"virt-launcher-{vm}-{namespace}xyz")
    cluster.set_pod_phase("a", "virt-launcher-vm-b-axyz", "Pending")
    cluster.add_handler_pod("node-1")
    cluster.add_handler_pod("node-2")
    return cluster


async def test_version_and_discovery_documents(kubevirt_cluster: KubeVirtCluster) -> None:
    url = kubevirt_cluster.url
    for path in ("/version", "/version/"):  # kr8s asks with the trailing slash
        status, body = await get_json(url + path)
        assert status == 200 and body["gitVersion"] == "v1.32.0" and body["major"] == "1"
    _, core = await get_json(url + "/api/v1")
    assert core["kind"] == "APIResourceList" and core["groupVersion"] == "v1"
    by_name = {entry["name"]: entry for entry in core["resources"]}
    assert by_name["pods"]["namespaced"] is True and by_name["pods"]["shortNames"] == ["po"]
    assert by_name["pods/log"]["verbs"] == ["get"] and by_name["pods/exec"]["kind"] == "PodExecOptions"
    assert by_name["nodes"]["namespaced"] is False and "nodes/proxy" in by_name
    _, groups = await get_json(url + "/apis")
    group_names = {group["name"] for group in groups["groups"]}
    assert {"apps", "rbac.authorization.k8s.io", "policy", "kubevirt.io", "hco.kubevirt.io"} <= group_names
    _, kubevirt = await get_json(url + "/apis/kubevirt.io/v1")
    vmis = next(entry for entry in kubevirt["resources"] if entry["name"] == "virtualmachineinstances")
    assert vmis["kind"] == "VirtualMachineInstance" and vmis["shortNames"] == ["vmi", "vmis"]
    status, missing = await get_json(url + "/apis/nonexistent.io/v1")
    assert status == 404 and missing["kind"] == "Status" and missing["reason"] == "NotFound"


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("kubevirt.io=virt-launcher", {"virt-launcher-vm-a-axyz", "virt-launcher-vm-b-axyz"}),
        ("kubevirt.io==virt-launcher", {"virt-launcher-vm-a-axyz", "virt-launcher-vm-b-axyz"}),
        ("kubevirt.io!=virt-launcher", set()),
        ("vm.kubevirt.io/name", {"virt-launcher-vm-a-axyz", "virt-launcher-vm-b-axyz"}),
        ("!vm.kubevirt.io/name", set()),
        ("vm.kubevirt.io/name in (vm-b, vm-c)", {"virt-launcher-vm-b-axyz"}),
        ("vm.kubevirt.io/name notin (vm-b)", {"virt-launcher-vm-a-axyz"}),
        ("kubevirt.io=virt-launcher,kubevirt.io/nodeName=node-2", {"virt-launcher-vm-b-axyz"}),
        (
            "kubevirt.io=virt-launcher,vm.kubevirt.io/name in (vm-a,vm-b),!missing",
            {"virt-launcher-vm-a-axyz", "virt-launcher-vm-b-axyz"},
        ),
    ],
)
async def test_label_selectors_on_a_namespace(
    small_cluster: KubeVirtCluster, selector: str, expected: set[str]
) -> None:
    status, body = await get_json(small_cluster.url + "/api/v1/namespaces/a/pods", labelSelector=selector)
    assert status == 200
    assert names(body) == expected


async def test_label_selector_across_namespaces(small_cluster: KubeVirtCluster) -> None:
    _, handlers = await get_json(
        small_cluster.url + "/api/v1/pods", labelSelector="kubevirt.io in (virt-handler)"
    )
    assert len(handlers["items"]) == 2
    assert {item["metadata"]["namespace"] for item in handlers["items"]} == {"kubevirt"}
    _, launchers = await get_json(
        small_cluster.url + "/api/v1/pods", labelSelector="kubevirt.io=virt-launcher"
    )
    assert {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in launchers["items"]} == {
        ("a", "virt-launcher-vm-a-axyz"),
        ("a", "virt-launcher-vm-b-axyz"),
        ("b", "virt-launcher-vm-a-bxyz"),
    }


async def test_invalid_label_selector_is_a_bad_request(small_cluster: KubeVirtCluster) -> None:
    status, body = await get_json(small_cluster.url + "/api/v1/pods", labelSelector="a in (b")
    assert (
        status == 400 and body["reason"] == "BadRequest" and "unable to parse requirement" in body["message"]
    )


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("spec.nodeName=node-1", {"virt-launcher-vm-a-axyz"}),
        ("status.phase=Pending", {"virt-launcher-vm-b-axyz"}),
        ("status.phase!=Pending", {"virt-launcher-vm-a-axyz"}),
        ("metadata.name==virt-launcher-vm-b-axyz", {"virt-launcher-vm-b-axyz"}),
        ("metadata.namespace=a,spec.nodeName=node-2,status.phase=Pending", {"virt-launcher-vm-b-axyz"}),
        ("metadata.namespace=b", set()),
    ],
)
async def test_field_selectors_on_pods(
    small_cluster: KubeVirtCluster, selector: str, expected: set[str]
) -> None:
    status, body = await get_json(small_cluster.url + "/api/v1/namespaces/a/pods", fieldSelector=selector)
    assert status == 200
    assert names(body) == expected


async def test_field_selector_on_an_unsupported_field_is_rejected(small_cluster: KubeVirtCluster) -> None:
    url = small_cluster.url + "/apis/kubevirt.io/v1/virtualmachineinstances"
    status, body = await get_json(url, fieldSelector="status.phase=Running")
    assert status == 400
    assert (
        body["message"]
        == '"status.phase" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )
    status, body = await get_json(small_cluster.url + "/api/v1/pods", fieldSelector="spec.foo=x")
    assert (status, body["message"]) == (400, "field label not supported: spec.foo")
    _, named = await get_json(url, fieldSelector="metadata.name=vm-a")
    assert {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in named["items"]} == {
        ("a", "vm-a"),
        ("b", "vm-a"),
    }


async def test_list_bodies_look_like_the_real_ones(small_cluster: KubeVirtCluster) -> None:
    _, pods = await get_json(small_cluster.url + "/api/v1/pods")
    assert (pods["kind"], pods["apiVersion"]) == ("PodList", "v1")
    assert pods["metadata"]["resourceVersion"].isdigit()
    assert all("kind" not in item for item in pods["items"])  # built-in list items carry no kind
    keys = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in pods["items"]]
    assert keys == sorted(keys)
    _, vmis = await get_json(small_cluster.url + "/apis/kubevirt.io/v1/virtualmachineinstances")
    assert (vmis["kind"], vmis["apiVersion"]) == ("VirtualMachineInstanceList", "kubevirt.io/v1")
    assert {item["kind"] for item in vmis["items"]} == {"VirtualMachineInstance"}  # CR items do
    assert len(vmis["items"]) == 3
    _, empty = await get_json(small_cluster.url + "/api/v1/namespaces/no-such-namespace/pods")
    assert empty["items"] == []  # listing in a missing namespace is an empty list, as for real


async def test_pagination_with_limit_and_continue(small_cluster: KubeVirtCluster) -> None:
    url = small_cluster.url + "/api/v1/pods"
    _, everything = await get_json(url)
    seen: list[str] = []
    params = {"limit": "2"}
    while True:
        _, page = await get_json(url, **params)
        seen += [item["metadata"]["name"] for item in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
        assert page["metadata"]["remainingItemCount"] == len(everything["items"]) - len(seen)
        params = {"limit": "2", "continue": token}
    assert seen == [item["metadata"]["name"] for item in everything["items"]]


@pytest.mark.parametrize(
    ("path", "message", "details"),
    [
        ("/api/v1/namespaces/a/pods/nope", 'pods "nope" not found', {"name": "nope", "kind": "pods"}),
        ("/api/v1/namespaces/missing/pods/nope", 'pods "nope" not found', {"name": "nope", "kind": "pods"}),
        (
            "/api/v1/namespaces/missing",
            'namespaces "missing" not found',
            {"name": "missing", "kind": "namespaces"},
        ),
        (
            "/apis/kubevirt.io/v1/namespaces/a/virtualmachineinstances/nope",
            'virtualmachineinstances.kubevirt.io "nope" not found',
            {"name": "nope", "group": "kubevirt.io", "kind": "virtualmachineinstances"},
        ),
        (
            "/api/v1/nodes/nope/proxy/stats/summary",
            'nodes "nope" not found',
            {"name": "nope", "kind": "nodes"},
        ),
    ],
)
async def test_not_found_is_a_status_body(
    small_cluster: KubeVirtCluster, path: str, message: str, details: dict[str, str]
) -> None:
    status, body = await get_json(small_cluster.url + path)
    assert status == 404
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "NotFound",
        "details": details,
        "code": 404,
    }


async def test_created_objects_are_admitted(kubevirt_cluster: KubeVirtCluster) -> None:
    kubevirt_cluster.add_namespace("work")
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"generateName": "cfg-"},
        "data": {"a": "1"},
    }
    url = kubevirt_cluster.url + "/api/v1/namespaces/work/configmaps"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=config_map) as response:
            created = await response.json()
            assert response.status == 201
        meta = created["metadata"]
        assert meta["name"].startswith("cfg-") and len(meta["name"]) == 9 and meta["namespace"] == "work"
        assert meta["uid"] and meta["resourceVersion"].isdigit() and meta["creationTimestamp"].endswith("Z")
        duplicate = {**config_map, "metadata": {"name": meta["name"]}}
        async with session.post(url, json=duplicate) as response:
            conflict = await response.json()
        assert (response.status, conflict["reason"]) == (409, "AlreadyExists")
        assert conflict["message"] == f'configmaps "{meta["name"]}" already exists'
        async with session.post(
            kubevirt_cluster.url + "/api/v1/namespaces/ghost/configmaps", json=config_map
        ) as response:
            missing = await response.json()
        assert (response.status, missing["message"]) == (404, 'namespaces "ghost" not found')


async def test_custom_resources_take_merge_and_json_patches(kubevirt_cluster: KubeVirtCluster) -> None:
    kubevirt_cluster.add_kubevirt_cr("kubevirt")
    kubevirt_cluster.add_hco_cr("kubevirt-hyperconverged")
    api = await kr8s.asyncio.api(url=kubevirt_cluster.url)
    kubevirt = await anext(api.get("kubevirts", "kubevirt", namespace="kubevirt"))
    assert isinstance(kubevirt, APIObject)
    verbosity = {"spec": {"configuration": {"developerConfiguration": {"logVerbosity": {"virtHandler": 4}}}}}
    await kubevirt.patch(verbosity)  # kr8s sends a JSON merge patch
    hco = await anext(
        api.get("hyperconvergeds", "kubevirt-hyperconverged", namespace="kubevirt-hyperconverged")
    )
    assert isinstance(hco, APIObject)
    await hco.patch(
        [{"op": "add", "path": "/spec/logVerbosityConfig", "value": {"kubevirt": {"virtHandler": 4}}}],
        type="json",
    )
    stored_kv = kubevirt_cluster.get_object("kubevirt.io/v1", "KubeVirt", "kubevirt", "kubevirt")
    stored_hco = kubevirt_cluster.get_object(
        "hco.kubevirt.io/v1beta1", "HyperConverged", "kubevirt-hyperconverged", "kubevirt-hyperconverged"
    )
    assert stored_kv is not None and stored_hco is not None
    assert stored_kv["spec"]["configuration"]["developerConfiguration"]["logVerbosity"] == {"virtHandler": 4}
    assert stored_kv["spec"]["imagePullPolicy"] == "IfNotPresent"  # merged, not replaced
    assert stored_kv["metadata"]["generation"] == 2
    assert stored_hco["spec"]["logVerbosityConfig"] == {"kubevirt": {"virtHandler": 4}}
    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            kubevirt_cluster.url + "/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts/kubevirt",
            data=json.dumps({"spec": {}}),
            headers={"Content-Type": "application/strategic-merge-patch+json"},
        ) as response,
    ):
        assert response.status == 415  # custom resources do not speak strategic merge
        assert (await response.json())["reason"] == "UnsupportedMediaType"


async def test_kr8s_lists_with_selectors_and_shortnames(small_cluster: KubeVirtCluster) -> None:
    api = await kr8s.asyncio.api(url=small_cluster.url)
    selected = api.get(
        "pods",
        namespace=kr8s.ALL,
        label_selector={"kubevirt.io": "virt-launcher"},
        field_selector={"spec.nodeName": "node-1"},
    )
    launchers = [pod async for pod in selected if isinstance(pod, APIObject)]
    assert {(pod.namespace, pod.name) for pod in launchers} == {
        ("a", "virt-launcher-vm-a-axyz"),
        ("b", "virt-launcher-vm-a-bxyz"),
    }
    vmis = [vmi async for vmi in api.get("vmi", namespace="a") if isinstance(vmi, APIObject)]
    assert sorted(vmi.name for vmi in vmis) == ["vm-a", "vm-b"]


async def test_kmock_dsl_reactions_still_apply_to_unclaimed_paths(kubevirt_cluster: KubeVirtCluster) -> None:
    kubevirt_cluster.call(lambda api: api["get /custom/endpoint"] << b"hello")
    async with (
        aiohttp.ClientSession() as session,
        session.get(kubevirt_cluster.url + "/custom/endpoint") as response,
    ):
        assert (response.status, await response.read()) == (200, b"hello")
    kubevirt_cluster.add_namespace("tenant")
    patch = {"metadata": {"labels": {"team": "vms"}}}
    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            kubevirt_cluster.url + "/api/v1/namespaces/tenant",
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response,
    ):
        assert response.status == 200
    # kmock's object history records every version written through the API.
    versions = kubevirt_cluster.call(lambda api: api.objects["v1/namespaces", None, "tenant"].history.raw)
    assert len(versions) == 2
    assert versions[0] is not None and "team" not in versions[0]["metadata"]["labels"]
    assert versions[1] is not None and versions[1]["metadata"]["labels"]["team"] == "vms"


async def test_watch_resumes_after_a_list_and_honours_selectors(small_cluster: KubeVirtCluster) -> None:
    url = small_cluster.url + "/api/v1/namespaces/a/pods"
    _, listed = await get_json(url)
    params = {
        "watch": "true",
        "resourceVersion": listed["metadata"]["resourceVersion"],
        "fieldSelector": "metadata.name=virt-launcher-vm-b-axyz",
        "timeoutSeconds": "5",
    }
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
        small_cluster.delete_pod("a", "virt-launcher-vm-a-axyz")  # not selected: no event
        small_cluster.delete_pod("a", "virt-launcher-vm-b-axyz")
        event = json.loads(await response.content.readline())
    assert (event["type"], event["object"]["metadata"]["name"]) == ("DELETED", "virt-launcher-vm-b-axyz")
