"""The VM page's console lines: found by name among LOGS_DIR's entries, the newest window, its last lines."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from stats_log_collector.memstat import console_log
from stats_log_collector.memstat.console_log import console_tail, last_lines

POD = "virt-launcher-web-abcde"


def console_file(folder: Path, stamp: str, lines: list[str], pod: str = POD) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pod}.guest-console-log.{stamp}.log.gz"
    path.write_bytes(gzip.compress("".join(f"{line}\n" for line in lines).encode()))
    return path


def test_the_newest_window_of_any_pod_and_its_last_lines(tmp_path: Path) -> None:
    console_file(tmp_path / "web", "20261201T040000Z", ["old"])
    console_file(
        tmp_path / "web", "20261201T050000Z", [f"line {i}" for i in range(120)], pod="virt-launcher-web-zzzzz"
    )
    (tmp_path / "web" / f"{POD}.compute.20261201T060000Z.log.gz").write_bytes(gzip.compress(b"not console\n"))
    (tmp_path / "web" / f".{POD}.guest-console-log.20261201T070000Z.log.gz.tmp").write_bytes(b"being written")
    name, lines = console_tail(tmp_path, "vms", "web")  # type: ignore[misc]
    assert name == "virt-launcher-web-zzzzz.guest-console-log.20261201T050000Z.log.gz"
    assert lines == [f"line {i}" for i in range(70, 120)]


def test_a_namespace_folder_wins_and_names_are_only_compared(tmp_path: Path) -> None:
    console_file(tmp_path / "web", "20261201T050000Z", ["no namespace"])
    console_file(tmp_path / "vms" / "web", "20261201T040000Z", ["in vms"])
    assert console_tail(tmp_path, "vms", "web") is not None
    assert console_tail(tmp_path, "vms", "web")[1] == ["in vms"]  # type: ignore[index]
    assert console_tail(tmp_path, "other", "web")[1] == ["no namespace"]  # type: ignore[index]
    (tmp_path / "outside").mkdir()
    console_file(tmp_path / "outside", "20261201T050000Z", ["secret"])
    (tmp_path / "link").symlink_to(tmp_path / "outside")
    assert console_tail(tmp_path, "", "link") is None  # a symlinked folder is not followed
    # With LOGS_DIR = vms/, nothing but vms/web may be found, whatever the names say.
    for namespace, vm in (("", ".."), ("", "."), ("", ""), ("", "../web"), ("", "web/"), ("", "../outside"),
                          ("", "vms/web"), ("..", "outside"), ("", "\x00"), ("", "/")):  # fmt: skip
        assert console_tail(tmp_path / "vms", namespace, vm) is None, (namespace, vm)


def test_a_symlinked_console_file_is_not_read(tmp_path: Path) -> None:
    target = console_file(tmp_path / "elsewhere", "20261201T050000Z", ["secret"])
    (tmp_path / "web").mkdir()
    os.symlink(target, tmp_path / "web" / target.name)
    assert console_tail(tmp_path, "", "web") is None


def test_cut_damaged_and_huge_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = console_file(tmp_path / "web", "20261201T050000Z", [f"line {i}" for i in range(1000)])
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # being written: what can be read
    lines = last_lines(path)
    assert lines and lines[0].startswith("line ")
    path.write_bytes(b"not gzip at all")
    assert last_lines(path) == []
    path.write_bytes(gzip.compress(b"x" * 100_000 + b"\nshort\n" + b"<script>\xff\n"))
    assert last_lines(path) == ["x" * console_log.MAX_LINE, "short", "<script>\ufffd"]
    monkeypatch.setattr(console_log, "MAX_READ", 1000)  # a gzip bomb stops at MAX_READ
    path.write_bytes(gzip.compress(b"y\n" * 10_000_000))
    assert len(last_lines(path)) == 50
