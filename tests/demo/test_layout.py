"""The demo's node layout is the one virtlet-log reads and kubelet writes."""

from __future__ import annotations

from pathlib import Path

from stats_log_collector.demo.children import KUBE_VARIABLES, child_environment
from stats_log_collector.demo.layout import Layout
from stats_log_collector.virtlet_log.paths import (
    PodDirListing,
    PodLogDirs,
    output_path,
    pod_dir_of,
    source_of,
)


def test_sandbox_ids_are_stable_uuids_per_vm() -> None:
    assert Layout.sandbox("demo-vm1") == Layout.sandbox("demo-vm1") != Layout.sandbox("demo-vm2")
    assert len(Layout.sandbox("demo-vm1")) == 36


def test_virtlet_log_writes_each_console_to_the_demos_pod_log(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    source = source_of(layout.vms, layout.console_log("demo-vm1"))
    assert source is not None and source.container_attempt == ("demo-vm1", "0")
    dirs = PodLogDirs([layout.pod_dir("demo-vm1").name, layout.pod_dir("demo-vm2").name])
    pod_dir = pod_dir_of(source, dirs)
    assert pod_dir == layout.pod_dir("demo-vm1").name
    kubelets = PodDirListing(directories=frozenset({"demo-vm1"}))  # the container directory kubelet makes
    assert output_path(layout.pods, source, pod_dir, kubelets) == layout.pod_log("demo-vm1")


def test_components_get_no_cluster_settings() -> None:
    base = {"PATH": "/usr/bin", "KUBECONFIG": "/root/.kube/config", "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    env = child_environment({"LOG_FORMAT": "cri"}, base)
    assert env == {"PATH": "/usr/bin", "LOG_FORMAT": "cri"}
    assert not set(KUBE_VARIABLES) & set(env)
