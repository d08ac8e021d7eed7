"""Source rotation, truncation, inode reuse and deletion, live and across restarts."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest

from stats_log_collector.tail import recovery
from stats_log_collector.tail.sources import open_siblings
from stats_log_collector.tail.tailer import Status
from tests.kubelet_logs import read_log_file
from tests.tail.tailing import Crash, Env, abandon, assert_same, copy_truncate, crash_in_write, rename_rotate


def test_rename_rotation_reads_the_old_file_to_its_end(env: Env) -> None:
    """fluent-bit#2110 and fluent-bit#5382: the rest of the old file, then the new one from its start."""
    t = env.tailer()
    env.append(b"old 1\n")
    env.poll(t)
    env.append(b"old 2\nold unterminated")
    rename_rotate(env)
    env.append(b"new 1\n")
    env.poll(t)
    assert env.rebuilt() == env.expected()
    entries = read_log_file(env.output)
    assert [e.partial for e in entries] == [False, False, True, False]  # the old tail ends as a partial piece


def test_two_rotations_between_polls(cri: Env) -> None:
    t = cri.tailer()
    cri.append(b"A1\n")
    cri.poll(t)
    cri.append(b"A2\n")
    rename_rotate(cri)
    cri.append(b"B1\n")
    rename_rotate(cri)
    cri.append(b"C1\n")
    cri.poll(t)
    assert cri.rebuilt() == b"A1\nA2\nB1\nC1\n"


def test_two_rotations_while_down(env: Env) -> None:
    """loki#14462; and fluent-bit#1330: a rotated file already read is not read again."""
    t = env.tailer()
    env.append(b"zero\n")
    env.poll(t)
    rename_rotate(env)  # read live: x.log.1 is finished
    env.append(b"A1\n")
    env.poll(t)
    env.append(b"A2 unterminated")
    env.poll(t)
    abandon(t)
    rename_rotate(env)
    env.append(b"B1\n")
    rename_rotate(env)
    env.append(b"C1\nC2")
    env.drain(env.tailer())
    assert env.rebuilt() == env.expected()
    assert sorted(p.name for p in env.source.parent.iterdir())[-1] == "vm_0.log.3"


def test_restart_after_rotation_does_not_reread(env: Env) -> None:
    t = env.tailer()
    env.append(b"old\n")
    env.poll(t)
    rename_rotate(env)
    env.append(b"new\n")
    env.poll(t)
    abandon(t)
    env.drain(env.tailer())
    assert env.rebuilt() == env.expected()


def test_crash_while_finishing_a_rotated_file(cri: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    t = cri.tailer()
    cri.append(b"old 1\n")
    cri.poll(t)
    cri.append(b"old 2\n")
    rename_rotate(cri)
    cri.append(b"new 1\n")
    with crash_in_write(monkeypatch, 10), pytest.raises(Crash):
        cri.poll(t)
    abandon(t)
    cri.drain(cri.tailer())
    assert cri.rebuilt() == cri.expected()


def test_copytruncate_live_finishes_from_the_copy(env: Env) -> None:
    """The file shrank: start again at 0, no duplicate (vector#23619 missed the truncation)."""
    t = env.tailer()
    env.append(b"one\n")
    env.poll(t)
    env.append(b"two, not read before the truncation\n")
    copy_truncate(env)
    env.append(b"three\n")
    env.poll(t)
    assert env.rebuilt() == env.expected()


def test_copytruncate_refilled_beyond_offset(cri: Env) -> None:
    """Truncated and written again past our offset: the head (or the bytes before the offset) tell."""
    t = cri.tailer()
    cri.append(b"old head\n")
    cri.poll(t)
    copy_truncate(cri)
    cri.append(b"new head, longer than the old file\n")
    cri.poll(t)
    assert cri.rebuilt() == cri.expected()


def test_truncated_without_copy(cri: Env, caplog: pytest.LogCaptureFixture) -> None:
    t = cri.tailer()
    cri.append(b"read\nheld")
    cri.poll(t)
    with caplog.at_level(logging.WARNING):
        os.truncate(cri.source, 0)
        cri.append(b"fresh\n")
        cri.poll(t)
    assert "no copy found" in caplog.text
    assert cri.rebuilt() == cri.expected()  # the held "held" was written as a partial piece


def test_copytruncate_while_down(env: Env) -> None:
    t = env.tailer()
    env.append(b"one: the lines of a console are usually long enough to recognise a file by\n")
    env.poll(t)
    env.append(b"two\n")
    env.poll(t)
    abandon(t)
    env.append(b"three, written while down\n")
    copy_truncate(env)
    env.append(b"four\n")
    env.drain(env.tailer())
    assert env.rebuilt() == env.expected()


def test_copytruncates_while_down_after_a_live_one(cri: Env) -> None:
    """Found in a stress run: after a live copy-truncate the tailer is at 0 of an empty file; a checkpoint
    saying so knows no content, and after more copy-truncates while down it would match the path (same
    inode) and skip the copies."""
    t = cri.tailer()
    line = b"a console line long enough to tell the generations of this file apart: %d\n"
    cri.append(line % 1)
    cri.poll(t)
    copy_truncate(cri)
    cri.poll(t)  # finishes from the copy, then follows the emptied file from 0
    t.close()
    for generation in (2, 3):
        cri.append(line % generation)
        copy_truncate(cri)
    cri.append(line % 4)
    cri.drain(cri.tailer())
    assert cri.rebuilt() == cri.expected()


def test_copytruncate_while_the_restart_lists_rotated_files(
    cri: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in a stress run: the current file is opened, then the rotated ones listed; a copy-truncate in
    between puts the current content into a listed copy, which must not be read a second time."""
    line = b"a console line long enough to tell the generations of this file apart: %s\n"
    t = cri.tailer()
    cri.append(line % b"A1")
    cri.poll(t)
    abandon(t)
    cri.append(line % b"A2")
    copy_truncate(cri)
    cri.append(line % b"B1")
    real = open_siblings
    calls: list[int] = []

    def rotating_meanwhile(*args: Any) -> Any:
        if not calls:
            copy_truncate(cri)
            cri.append(line % b"C1")
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(recovery, "open_siblings", rotating_meanwhile)
    cri.drain(cri.tailer())
    assert_same(cri.rebuilt(), cri.expected())


def test_copytruncate_while_down_with_little_known(cri: Env) -> None:
    """Fewer than 64 bytes known: a content match after a restart counts if it is the only one."""
    t = cri.tailer()
    cri.append(b"one\n")
    cri.poll(t)
    t.close()
    cri.append(b"two\n")
    copy_truncate(cri)
    cri.append(b"three\n")
    cri.drain(cri.tailer())
    assert cri.rebuilt() == cri.expected()


def test_ambiguous_short_content_is_not_guessed(cri: Env, caplog: pytest.LogCaptureFixture) -> None:
    """Fewer than 64 bytes known and two rotated files start alike: neither is taken for ours (found in a
    stress run: a wrong file read from the checkpoint's offset)."""
    t = cri.tailer()
    cri.append(b"boot\n")
    cri.poll(t)
    t.close()
    cri.append(b"A\n")
    copy_truncate(cri)
    cri.append(b"boot\nB\n")  # the next boot prints the same first line
    copy_truncate(cri)
    cri.append(b"C\n")
    with caplog.at_level(logging.WARNING):
        cri.drain(cri.tailer())
    assert "reading the current file from the start" in caplog.text
    assert cri.rebuilt() == b"boot\nC\n"  # what the copies hold after "boot" is lost, nothing is doubled


def test_queued_file_truncated_before_it_is_read(cri: Env) -> None:
    """After a restart the current file waits behind the rotated ones; copy-truncated meanwhile, its old
    content must come from the copy and the new content after it (found in a stress run: a lost rotation)."""
    t = cri.tailer()
    cri.append(b"A0\n")
    cri.poll(t)
    abandon(t)
    cri.append(b"A1 " + b"a" * 30000 + b"\n")
    rename_rotate(cri)
    cri.append(b"B0 old content of the current file\n")
    t = cri.tailer(chunk_bytes=4096, poll_budget=4096)
    assert cri.poll(t).more  # still in the rotated file; the current one is open and queued
    copy_truncate(cri)
    cri.append(b"C0 new content, written after the truncation and longer than before\n")
    cri.drain(t)
    assert_same(cri.rebuilt(), cri.expected())


def test_inode_reuse_is_a_new_file(cri: Env, caplog: pytest.LogCaptureFixture) -> None:
    """vector#1910: same inode, other content: read from the start, not from the old offset."""
    t = cri.tailer()
    cri.append(b"old content\n")
    cri.poll(t)
    t.close()
    ino = cri.source.stat().st_ino
    new = b"entirely different and longer content\n"
    with open(cri.source, "r+b") as f:  # rewritten in place: the same inode
        f.write(new)
    assert cri.source.stat().st_ino == ino
    with caplog.at_level(logging.WARNING):
        cri.drain(cri.tailer())
    assert "rewritten" in caplog.text
    assert cri.rebuilt() == b"old content\n" + new


def test_same_head_other_content_before_offset(cri: Env) -> None:
    t = cri.tailer()
    head = b"SeaBIOS banner, same on every boot\n" * 40
    cri.append(head + b"first boot\n")
    cri.poll(t)
    t.close()
    cri.source.write_bytes(head + b"second boot, longer than the first\n")  # truncated and rewritten
    cri.drain(cri.tailer())
    assert cri.rebuilt() == head + b"first boot\n" + head + b"second boot, longer than the first\n"


def test_really_reused_inode(cri: Env) -> None:
    """A deleted file's inode given to a new file (ext4 does it at once, tmpfs does not: then skip)."""
    t = cri.tailer()
    cri.append(b"A" * 50 + b"\n")
    cri.poll(t)
    t.close()
    ino = cri.source.stat().st_ino
    for _ in range(20):
        cri.source.unlink()
        cri.source.write_bytes(b"B" * 80 + b"\n")
        if cri.source.stat().st_ino == ino:
            break
    else:
        pytest.skip("the filesystem under tmp_path does not reuse inodes at once")
    cri.drain(cri.tailer())
    assert cri.rebuilt() == b"A" * 50 + b"\n" + b"B" * 80 + b"\n"


def test_source_deleted_is_finished_and_forgotten(env: Env) -> None:
    t = env.tailer()
    env.append(b"one\n")
    env.poll(t)
    env.append(b"last words, unterminated")
    env.source.unlink()
    p = env.poll(t)
    assert p.status is Status.FINISHED
    assert env.checkpoint() is None and not list(env.state.glob("*.json"))
    assert env.rebuilt() == env.expected()
    assert env.poll(t).status is Status.FINISHED


def test_source_missing_then_appears(cri: Env) -> None:
    cri.source.unlink()
    t = cri.tailer()
    assert cri.poll(t).status is Status.WAITING
    cri.append(b"hello\n")
    assert cri.poll(t).status is Status.ACTIVE
    assert cri.rebuilt() == b"hello\n"


def test_source_renamed_away_before_the_new_file_exists(cri: Env) -> None:
    t = cri.tailer()
    cri.append(b"one\n")
    cri.poll(t)
    cri.append(b"two\n")
    cri.source.rename(cri.source.with_name("vm_0.log.1"))
    assert cri.poll(t).status is Status.WAITING  # "two" is written; the old file stays open
    cri.append(b"three\n")  # the new file
    assert cri.poll(t).status is Status.ACTIVE
    assert cri.rebuilt() == cri.expected()


def test_source_deleted_while_down_leaves_rotated_files_to_finish(cri: Env) -> None:
    """The watcher resumes a checkpointed source whose path is gone: what is left is written, then WAITING
    (the caller decides whether a missing path means gone)."""
    t = cri.tailer()
    cri.append(b"one\n")
    cri.poll(t)
    abandon(t)
    cri.append(b"two, unterminated")
    rename_rotate(cri)
    cri.source.unlink()
    t = cri.tailer()
    p = cri.poll(t)
    assert p.status is Status.WAITING and cri.checkpoint() is not None
    assert cri.rebuilt() == cri.expected()  # the rotated file finished, its last line flushed
    t.close()
    assert cri.poll(cri.tailer()).status is Status.WAITING  # and not read again
    assert cri.rebuilt() == cri.expected()


def test_checkpointed_source_gone_entirely(cri: Env) -> None:
    t = cri.tailer()
    cri.append(b"one\n")
    cri.poll(t)
    t.close()
    cri.source.unlink()
    assert cri.poll(cri.tailer()).status is Status.WAITING


@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink loop"])
def test_unusable_source_is_skipped_and_retried(
    cri: Env, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    cri.source.unlink()
    if kind == "directory":
        cri.source.mkdir()
    elif kind == "fifo":
        os.mkfifo(cri.source)
    else:
        cri.source.symlink_to(cri.source)
    t = cri.tailer()
    with caplog.at_level(logging.WARNING):
        p = cri.poll(t)  # must not hang on the FIFO
        cri.poll(t)
    assert p.status is Status.BLOCKED and p.error
    assert caplog.text.count("source refused") == 1  # never followed, never opened as a FIFO
    if kind == "directory":
        cri.source.rmdir()
    else:
        cri.source.unlink()
    cri.append(b"now a file\n")
    assert cri.poll(t).status is Status.ACTIVE
    assert cri.rebuilt() == b"now a file\n"
