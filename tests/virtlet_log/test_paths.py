"""Mapping raw console logs to kubelet's log paths, in each of kubelet's three layouts."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from stats_log_collector.virtlet_log.paths import (
    Layout,
    PodDirListing,
    PodLogDirs,
    Source,
    created_output_path,
    legacy_layout,
    output_path,
    pod_dir_of,
    source_of,
)

SRC, DST = Path("/var/log/vms"), Path("/var/log/pods")
UID = "0a1b2c3d-1111-2222-3333-444455556666"
EMPTY = PodDirListing()


def listing(
    directories: Iterable[str] = (), files: Iterable[str] = (), others: Iterable[str] = ()
) -> PodDirListing:
    return PodDirListing(frozenset(directories), frozenset(files), frozenset(others))


def place(source: Source, dirs: PodLogDirs, held: PodDirListing = EMPTY) -> Path | None:
    """Where the watcher would write ``source``, the pod directory holding ``held``."""
    pod_dir = pod_dir_of(source, dirs)
    return None if pod_dir is None else output_path(DST, source, pod_dir, held)


def test_source_of_accepts_only_sandbox_slash_name_log() -> None:
    assert source_of(SRC, SRC / UID / "vm_0.log") == Source(UID, "vm_0.log")
    assert source_of(SRC, SRC / UID / "vm_0.txt") is None
    assert source_of(SRC, SRC / "vm_0.log") is None
    assert source_of(SRC, SRC / UID / "deeper" / "vm_0.log") is None
    assert source_of(SRC, Path("/elsewhere") / UID / "vm_0.log") is None
    assert source_of(SRC, SRC / UID / ".hidden.log") is None


@pytest.mark.parametrize(
    "path",
    [SRC / ".." / UID / "vm_0.log", SRC / "..", SRC / "a\nb" / "vm_0.log", SRC / UID / "vm\n_0.log"],
    ids=["dot-dot", "dot-dot alone", "newline in sandbox", "newline in name"],
)
def test_source_of_refuses_hostile_names(path: Path) -> None:
    assert source_of(SRC, path) is None


def test_legacy_layout_same_relative_path() -> None:
    source = Source(UID, "vm_0.log")
    assert place(source, PodLogDirs([UID, "other"])) == DST / UID / "vm_0.log"


def test_modern_layout_container_and_attempt() -> None:
    source = Source(UID, "compute_3.log")
    entries = ["ns_other-pod_ffff", f"default_virtlet-pod_{UID}"]
    assert (
        place(source, PodLogDirs(entries), listing(["compute"]))
        == DST / f"default_virtlet-pod_{UID}" / "compute" / "3.log"
    )


def test_container_names_with_underscores() -> None:
    source = Source(UID, "my_vm_12.log")
    assert (
        place(source, PodLogDirs([f"ns_pod_{UID}"]), listing(["my_vm"]))
        == DST / f"ns_pod_{UID}" / "my_vm" / "12.log"
    )


def test_legacy_wins_when_both_exist() -> None:
    assert place(Source(UID, "vm_0.log"), PodLogDirs([UID, f"ns_pod_{UID}"])) == DST / UID / "vm_0.log"


def test_waits_when_kubelet_has_no_directory_yet() -> None:
    assert place(Source(UID, "vm_0.log"), PodLogDirs(["ns_pod_other-uid"])) is None


def test_modern_layout_needs_an_attempt_number() -> None:
    assert place(Source(UID, "console.log"), PodLogDirs([f"ns_pod_{UID}"]), listing(["console"])) is None
    assert place(Source(UID, "console.log"), PodLogDirs([UID])) == DST / UID / "console.log"


def test_index_follows_added_and_removed_directories() -> None:
    dirs = PodLogDirs()
    source = Source(UID, "compute_0.log")
    assert place(source, dirs) is None
    dirs.add(f"ns_pod_{UID}")
    assert place(source, dirs, listing(["compute"])) == DST / f"ns_pod_{UID}" / "compute" / "0.log"
    dirs.discard(f"ns_pod_{UID}")
    assert place(source, dirs) is None


def test_modern_layout_waits_for_kubelets_container_directory() -> None:
    source = Source(UID, "compute_0.log")
    dirs = PodLogDirs([f"ns_pod_{UID}"])
    assert place(source, dirs) is None
    assert place(source, dirs, listing(["other-container"], files=("compute_0.log",))) is None
    assert place(source, dirs, listing(others=("compute",))) is None  # a symlink: never followed


# --- the two <podUID>/ layouts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "expected"),
    [
        (EMPTY, Layout.FLAT),  # a 1.10-1.13 kubelet would have made vm/ before the console existed
        (listing(["vm"]), Layout.CONTAINER_DIR),  # kubelet 1.10-1.13 made the container directory
        (listing(["vm", "sidecar"], files=("vm_0.log",)), Layout.CONTAINER_DIR),
        (listing(files=("vm_0.log",)), Layout.FLAT),  # written flat before: go on
        (listing(["sidecar"], files=("vm_0.log",)), Layout.FLAT),
        (listing(files=("sidecar_0.log", "vm_1.log")), Layout.FLAT),  # other flat files: kubelet < 1.10
        (listing(["sidecar"]), None),  # kubelet 1.10-1.13 made another container's directory, not ours yet
        (listing(others=("vm",)), None),  # a symlink named like the container directory: never followed
    ],
)
def test_legacy_layout_is_told_by_what_kubelet_made(held: PodDirListing, expected: Layout | None) -> None:
    assert legacy_layout(Source(UID, "vm_0.log"), held) is expected


def test_a_name_without_attempt_fits_only_the_flat_layout() -> None:
    assert legacy_layout(Source(UID, "console.log"), listing(["console"])) is Layout.FLAT


def test_container_dir_layout_for_each_attempt() -> None:
    dirs = PodLogDirs([UID])
    held = listing(["vm"], files=())
    assert place(Source(UID, "vm_0.log"), dirs, held) == DST / UID / "vm" / "0.log"
    assert place(Source(UID, "vm_7.log"), dirs, held) == DST / UID / "vm" / "7.log"


# Real trees, each from a public report; the console source is Virtlet's own example path (Mirantis/virtlet
# v0.8.2, deploy/virtlet-ds.yaml: "/var/log/vms/afd75bbb-8e97-11e7-9561-02420ac00002/cirros-vm_0.log").
VIRTLET_UID = "afd75bbb-8e97-11e7-9561-02420ac00002"
VIRTLET_SOURCE = Source(VIRTLET_UID, "cirros-vm_0.log")


@pytest.mark.parametrize(
    ("pod_dirs", "held", "expected"),
    [
        # kubelet < 1.10 (https://github.com/rancher-archives/rke/issues/169: `ls` of /var/log/pods shows
        # UID directories holding `testcontainer_0.log`)
        ([VIRTLET_UID, "c3c323a0-f273-11e7-a23e-5ab0d5506cd4"], EMPTY, f"{VIRTLET_UID}/cirros-vm_0.log"),
        # kubelet 1.10-1.13 (https://github.com/cri-o/cri-o/issues/1894: "/var/log/pods/{pod uid}/{container
        # name}/*.log"; https://github.com/grafana/loki/pull/557: "< 1.14 .../${POD_UID}/${CONTAINER}/*.log")
        ([VIRTLET_UID], listing(["cirros-vm"]), f"{VIRTLET_UID}/cirros-vm/0.log"),
        # kubelet >= 1.14 (https://github.com/containerd/containerd/pull/13453: "/var/log/pods/kube-system_
        # svclb-traefik-66854458-vg5ql_153d2708-9432-48e6-960d-040636f4833e/lb-tcp-80/0.log")
        (
            [
                "kube-system_svclb-traefik-66854458-vg5ql_153d2708-9432-48e6-960d-040636f4833e",
                f"default_cirros-vm_{VIRTLET_UID}",
            ],
            listing(["cirros-vm"]),
            f"default_cirros-vm_{VIRTLET_UID}/cirros-vm/0.log",
        ),
    ],
    ids=["kubelet<1.10", "kubelet1.10-1.13", "kubelet>=1.14"],
)
def test_virtlets_console_in_each_kubelet_layout(
    pod_dirs: list[str], held: PodDirListing, expected: str
) -> None:
    assert place(VIRTLET_SOURCE, PodLogDirs(pod_dirs), held) == DST / expected


def test_hostile_pod_directory_names_are_not_indexed() -> None:
    dirs = PodLogDirs(["..", f"ns_pod\n_{UID}", "a\nb"])
    assert dirs.modern(UID) is None
    assert not dirs.legacy("..") and not dirs.legacy("a\nb")


# --- CREATE_POD_LOG_DIRS --------------------------------------------------------------------------------


def test_created_output_path_follows_kubelets_directory_when_there_is_one() -> None:
    source = Source(UID, "vm_2.log")
    assert created_output_path(DST, source, None) == DST / UID / "vm_2.log"  # no pod dir: Virtlet's layout
    assert created_output_path(DST, source, UID) == DST / UID / "vm" / "2.log"  # waiting in 1.10-1.13
    assert created_output_path(DST, source, f"ns_pod_{UID}") == DST / f"ns_pod_{UID}" / "vm" / "2.log"
    assert created_output_path(DST, Source(UID, "console.log"), f"ns_pod_{UID}") == DST / UID / "console.log"
    assert created_output_path(DST, source, UID, listing(others=("vm",))) is None  # never over a symlink
