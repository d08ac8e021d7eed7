"""Helpers for memstat tests whose VMs come from the inventory's watches."""

from __future__ import annotations

from kubevirt_test_cluster import KubeVirtCluster


def delete_unseen(cluster: KubeVirtCluster, namespace: str, pod: str) -> None:
    """Delete ``pod`` while the pod watch of ``namespace`` is cut and its reconnection hangs 5 s: the
    inventory still holds the pod, as it does between a deletion and its event reaching us."""
    cluster.inject_timeout(f"^/api/v1/namespaces/{namespace}/pods$", 5.0, query_regex="watch=true")
    cluster.drop_watches()
    cluster.delete_pod(namespace, pod)
