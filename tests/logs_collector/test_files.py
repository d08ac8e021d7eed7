"""Files on disk: the gzip window writer, the journalled cursor store, retention, names."""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

from stats_log_collector.logs_collector import layout
from stats_log_collector.logs_collector.cursor import NANOS, Cursor
from stats_log_collector.logs_collector.retention import CollectedFile, enforce, select_removals
from stats_log_collector.logs_collector.store import JOURNAL, CursorStore
from stats_log_collector.logs_collector.writer import WindowFile


def test_names() -> None:
    start = 1_795_428_000 * NANOS + 123
    assert layout.launcher_file("virt-launcher-a-x", "compute", start) == (
        "virt-launcher-a-x.compute.20261123T100000Z.log.gz"
    )
    assert layout.handler_file("virt-handler-q", start) == "virt-handler-q.20261123T100000Z.log.gz"
    assert layout.window_start_of("virt-handler-q.20261123T100000Z.log.gz") == 1_795_428_000
    assert layout.vm_folder(Path("/d"), "ns", "vm", True) == Path("/d/ns/vm")
    assert layout.is_temp(layout.temp_name("a.log.gz"))


def test_window_file_is_invisible_until_published_and_empty_windows_make_none(tmp_path: Path) -> None:
    final = tmp_path / "vm" / "p.c.20261123T100000Z.log.gz"
    empty = WindowFile(final)
    empty.write(b"")
    assert empty.close() is False and not final.parent.exists()
    window = WindowFile(final)
    window.write(b"line 1\n")
    window.write(b"line 2\n")
    assert window.close() is True
    assert not final.exists() and gzip.decompress(window.temporary.read_bytes()) == b"line 1\nline 2\n"
    os.replace(window.temporary, final)
    # a second window starting in the same second extends the file, as a second gzip member
    again = WindowFile(final)
    again.write(b"line 3\n")
    again.close()
    assert gzip.decompress(final.read_bytes()) == b"line 1\nline 2\n"  # unchanged until published
    os.replace(again.temporary, final)
    assert gzip.decompress(final.read_bytes()) == b"line 1\nline 2\nline 3\n"


def test_store_commits_survive_reopening_and_replay_finishes_renames(tmp_path: Path) -> None:
    store = CursorStore(tmp_path)
    store.open()
    tmp, final = tmp_path / "vm" / ".f.log.gz.tmp", tmp_path / "vm" / "f.log.gz"
    tmp.parent.mkdir()
    tmp.write_bytes(b"data")
    store.commit({"k1": Cursor(5, 1)}, [(tmp, final)])
    assert final.read_bytes() == b"data" and not tmp.exists()
    store.close()
    # a crash after the record but before the rename: replay does it
    journal = tmp_path / layout.STATE_DIR / JOURNAL
    tmp2, final2 = tmp_path / "vm" / ".g.log.gz.tmp", tmp_path / "vm" / "g.log.gz"
    tmp2.write_bytes(b"second")
    record = {"renames": [["vm/.g.log.gz.tmp", "vm/g.log.gz"]], "cursors": {"k2": {"t": 9, "n": 2, "r": 0}}}
    with open(journal, "ab") as handle:
        handle.write(json.dumps(record).encode() + b"\n" + b'{"renames": [["vm/.h.log')  # torn record
    orphan = tmp_path / "vm" / ".h.log.gz.tmp"
    orphan.write_bytes(b"never committed")
    reopened = CursorStore(tmp_path)
    reopened.open()
    assert reopened.get("k1") == Cursor(5, 1) and reopened.get("k2") == Cursor(9, 2)
    assert final2.read_bytes() == b"second" and not orphan.exists()
    reopened.snapshot(["k1"], now=time.time() + 100, forget_after_secs=10)
    assert journal.read_bytes() == b""
    reopened.close()
    again = CursorStore(tmp_path)
    again.open()
    assert again.get("k1") == Cursor(5, 1) and again.get("k2") is None  # unseen too long: pruned
    again.close()


def test_retention_selection() -> None:
    now = 100_000.0
    files = [CollectedFile(Path(f"/d/{i}"), 10, now - age) for i, age in enumerate([5000, 50, 40, 30, 20])]
    assert [f.path.name for f in select_removals(files, now, 3600, 10_000)] == ["0"]
    assert [f.path.name for f in select_removals(files, now, 3600, 25)] == ["0", "1", "2"]


def test_retention_removes_files_and_empty_folders_only(tmp_path: Path) -> None:
    old = tmp_path / "vm-a" / "p.c.20200101T000000Z.log.gz"
    new = tmp_path / "vm-b" / "p.c.20261123T100000Z.log.gz"
    state = tmp_path / layout.STATE_DIR / "cursors.json"
    for path in (old, new, state):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)
    os.utime(old, (1000, 1000))
    assert enforce(tmp_path, now=10_000_000, max_age_secs=3600, max_bytes=10**9) == (1, 10)
    assert not old.parent.exists() and new.exists() and state.exists()
