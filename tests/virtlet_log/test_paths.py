"""Mapping raw console logs to kubelet's log paths, both layouts."""

from __future__ import annotations

from pathlib import Path

from stats_log_collector.virtlet_log.paths import PodLogDirs, Source, output_path, source_of

SRC, DST = Path("/var/log/vms"), Path("/var/log/pods")
UID = "0a1b2c3d-1111-2222-3333-444455556666"


def test_source_of_accepts_only_sandbox_slash_name_log() -> None:
    assert source_of(SRC, SRC / UID / "vm_0.log") == Source(UID, "vm_0.log")
    assert source_of(SRC, SRC / UID / "vm_0.txt") is None
    assert source_of(SRC, SRC / "vm_0.log") is None
    assert source_of(SRC, SRC / UID / "deeper" / "vm_0.log") is None
    assert source_of(SRC, Path("/elsewhere") / UID / "vm_0.log") is None
    assert source_of(SRC, SRC / UID / ".hidden.log") is None


def test_legacy_layout_same_relative_path() -> None:
    source = Source(UID, "vm_0.log")
    assert output_path(DST, source, PodLogDirs([UID, "other"])) == DST / UID / "vm_0.log"


def test_modern_layout_container_and_attempt() -> None:
    source = Source(UID, "compute_3.log")
    entries = ["ns_other-pod_ffff", f"default_virtlet-pod_{UID}"]
    assert (
        output_path(DST, source, PodLogDirs(entries))
        == DST / f"default_virtlet-pod_{UID}" / "compute" / "3.log"
    )


def test_container_names_with_underscores() -> None:
    source = Source(UID, "my_vm_12.log")
    assert (
        output_path(DST, source, PodLogDirs([f"ns_pod_{UID}"])) == DST / f"ns_pod_{UID}" / "my_vm" / "12.log"
    )


def test_legacy_wins_when_both_exist() -> None:
    assert (
        output_path(DST, Source(UID, "vm_0.log"), PodLogDirs([UID, f"ns_pod_{UID}"]))
        == DST / UID / "vm_0.log"
    )


def test_waits_when_kubelet_has_no_directory_yet() -> None:
    assert output_path(DST, Source(UID, "vm_0.log"), PodLogDirs(["ns_pod_other-uid"])) is None


def test_modern_layout_needs_an_attempt_number() -> None:
    assert output_path(DST, Source(UID, "console.log"), PodLogDirs([f"ns_pod_{UID}"])) is None
    assert output_path(DST, Source(UID, "console.log"), PodLogDirs([UID])) == DST / UID / "console.log"


def test_index_follows_added_and_removed_directories() -> None:
    dirs = PodLogDirs()
    source = Source(UID, "compute_0.log")
    assert output_path(DST, source, dirs) is None
    dirs.add(f"ns_pod_{UID}")
    assert output_path(DST, source, dirs) == DST / f"ns_pod_{UID}" / "compute" / "0.log"
    dirs.discard(f"ns_pod_{UID}")
    assert output_path(DST, source, dirs) is None
