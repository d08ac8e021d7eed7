"""Opening a followed file below a root, never through a link on the way (``fileid.directory_beneath``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stats_log_collector.tail.fileid import NotRegularFile, open_regular, rotated_siblings


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``root/sandbox/vm.log`` (and a rotated ``vm.log.1``), and ``secret/vm.log`` outside the root."""
    (tmp_path / "root" / "sandbox").mkdir(parents=True)
    (tmp_path / "root" / "sandbox" / "vm.log").write_bytes(b"console\n")
    (tmp_path / "root" / "sandbox" / "vm.log.1").write_bytes(b"older\n")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "vm.log").write_bytes(b"secret\n")
    (tmp_path / "secret" / "vm.log.1").write_bytes(b"secret\n")
    return tmp_path


def read(path: Path, beneath: Path | None) -> bytes:
    fd, _ = open_regular(path, beneath=beneath)
    try:
        return os.read(fd, 100)
    finally:
        os.close(fd)


def test_a_plain_path_below_the_root_opens(tree: Path) -> None:
    root = tree / "root"
    assert read(root / "sandbox" / "vm.log", root) == b"console\n"
    assert [s.path.name for s in rotated_siblings(root / "sandbox" / "vm.log", beneath=root)] == ["vm.log.1"]


def test_a_linked_folder_below_the_root_is_refused(tree: Path) -> None:
    root = tree / "root"
    (root / "sandbox").rename(tree / "moved")
    (root / "sandbox").symlink_to(tree / "secret", target_is_directory=True)
    assert read(root / "sandbox" / "vm.log", None) == b"secret\n"  # what O_NOFOLLOW alone lets through
    with pytest.raises(NotRegularFile, match="symbolic link in the path"):
        read(root / "sandbox" / "vm.log", root)
    assert rotated_siblings(root / "sandbox" / "vm.log", beneath=root) == []


def test_the_root_itself_may_be_a_link(tree: Path) -> None:
    """The root is the operator's setting (``/var/log/vms`` mounted or linked anywhere)."""
    (tree / "link").symlink_to(tree / "root", target_is_directory=True)
    assert read(tree / "link" / "sandbox" / "vm.log", tree / "link") == b"console\n"


@pytest.mark.parametrize(
    "relative", ["../secret/vm.log", "sandbox/../../secret/vm.log", "sandbox/vm.log/x", "none/vm.log"]
)
def test_dot_dot_a_file_for_a_folder_and_missing_folders_are_refused(tree: Path, relative: str) -> None:
    root = tree / "root"
    with pytest.raises(OSError):
        read(root / relative, root)


def test_a_path_outside_the_root_is_refused(tree: Path) -> None:
    with pytest.raises(NotRegularFile, match="not below"):
        read(tree / "secret" / "vm.log", tree / "root")
