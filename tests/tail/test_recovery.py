"""Restarts: checkpoints and the write-ahead intent repair every interrupted batch exactly."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from stats_log_collector.tail.checkpoint import Checkpoint, Intent, fingerprint
from stats_log_collector.tail.fileid import HEAD_BYTES
from stats_log_collector.tail.formats import LineAssembler, encode_cri, format_timestamp
from stats_log_collector.tail.slot_store import SlotFileStore
from stats_log_collector.tail.tailer import Status
from tests.kubelet_logs import read_log_file
from tests.tail.tailing import SAMPLE, Crash, Env, abandon, crash_in_write


def test_restart_continues_without_duplicates(env: Env) -> None:
    t = env.tailer()
    env.append(SAMPLE)
    env.poll(t)
    t.close()
    env.append(b"after close\n")
    t = env.tailer()
    env.poll(t)
    abandon(t)  # as after kill -9 once the poll is over
    env.append(b"after kill\n")
    env.drain(env.tailer())
    assert env.rebuilt() == env.expected()


def test_partial_line_survives_restart(env: Env) -> None:
    """fluent-bit#11265: the held start of a line is not committed, so it is read again after a restart."""
    t = env.tailer()
    env.append(b"first\npart of a li")
    env.poll(t)
    abandon(t)
    env.append(b"ne\n")
    t = env.tailer()
    env.poll(t)
    assert env.rebuilt() == env.expected()
    assert read_log_file(env.output)[-1].text == b"part of a line\n"


def test_idle_flushed_partial_continues_after_restart(env: Env) -> None:
    t = env.tailer()
    env.append(b"login: ")
    env.poll(t)
    env.poll(t, 1.5)  # "login: " written as a partial piece
    abandon(t)
    env.append(b"root\n")
    env.drain(env.tailer())
    assert [e.partial for e in read_log_file(env.output)] == [True, False]
    assert env.rebuilt() == env.expected()


@pytest.mark.parametrize("state", ["not written", "torn", "written, not committed"])
def test_recovery_from_each_intent_state(env: Env, monkeypatch: pytest.MonkeyPatch, state: str) -> None:
    t = env.tailer()
    env.append(b"committed line\n")
    env.poll(t)
    size_before = env.output.stat().st_size
    env.append(SAMPLE)
    if state == "written, not committed":
        env.poll(t)  # the commit after a batch is deferred: its intent covers it
    else:
        with crash_in_write(monkeypatch, 0 if state == "not written" else 1000), pytest.raises(Crash):
            env.poll(t)
    abandon(t)
    ck = env.checkpoint()
    assert ck is not None and ck.intent is not None and ck.intent.output_size_before == size_before
    done = env.output.stat().st_size - size_before
    assert done == {"not written": 0, "torn": 1000, "written, not committed": ck.intent.length}[state]
    env.append(b"more\n")
    t = env.tailer()
    env.drain(t)
    assert env.rebuilt() == env.expected()
    # The rebuilt batch carries the timestamp chosen before the crash.
    assert format_timestamp(ck.intent.time_ns).decode() in {e.time for e in read_log_file(env.output)}
    t.close()
    ck = env.checkpoint()
    assert ck is not None and ck.intent is None and ck.offset == len(env.written)


def test_recovery_of_a_torn_write_built_by_hand(cri: Env) -> None:
    """The recovery read from files alone: a source, a torn output, a checkpoint with an intent."""
    source = b"one\r\ntwo\r\n" + b"long " * 5000 + b"\r\nunfinished"
    cri.append(source)
    asm = LineAssembler()
    time_ns = 1_795_428_000_123_456_789
    batch = encode_cri(asm.feed(source), format_timestamp(time_ns))
    cri.output.write_bytes(batch[:123])  # torn in the middle of the long line
    st, out = cri.source.stat(), cri.output.stat()
    intent = Intent(len(source), len(source) - asm.pending_bytes, time_ns, "none", 0, len(batch))
    SlotFileStore(cri.state).save(
        Checkpoint(
            source=str(cri.source),
            dev=st.st_dev,
            ino=st.st_ino,
            head_len=HEAD_BYTES,
            head_hash=fingerprint(source[:HEAD_BYTES]),
            mark_hash=fingerprint(b""),
            offset=0,
            output=str(cri.output),
            output_dev=out.st_dev,
            output_ino=out.st_ino,
            output_size=0,
            format="cri",
            intent=intent,
        )
    )
    t = cri.tailer()
    cri.poll(t)
    assert cri.output.read_bytes() == batch  # exactly the missing suffix was appended
    cri.append(b" line\n")
    cri.poll(t)
    assert cri.rebuilt() == cri.expected()


def test_torn_write_whose_source_is_gone_ends_the_torn_line(
    cri: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    t = cri.tailer()
    cri.append(b"a" * 500 + b"\n")
    with crash_in_write(monkeypatch, 100), pytest.raises(Crash):
        cri.poll(t)
    abandon(t)
    cri.source.unlink()
    with caplog.at_level(logging.ERROR):
        p = cri.poll(cri.tailer())
    assert p.status is Status.WAITING
    assert "torn and its source is gone" in caplog.text
    entries = read_log_file(cri.output, expect="cri")  # still a valid file: the torn line was ended
    assert [e.text for e in entries] == [
        b"a" * (100 - len(b"2026-11-23T10:00:00.000000000Z stdout F ")) + b"\n"
    ]
    # The repair is recorded: a second start does not end the line again.
    cri.poll(cri.tailer())
    assert len(read_log_file(cri.output)) == 1


@pytest.mark.parametrize("torn", [False, True])
def test_interrupted_batch_after_kubelet_rotated_the_output(
    cri: Env, monkeypatch: pytest.MonkeyPatch, torn: bool
) -> None:
    t = cri.tailer()
    cri.append(b"before\n")
    cri.poll(t)
    cri.append(b"the batch\n" * 20)
    with crash_in_write(monkeypatch, 77 if torn else 0), pytest.raises(Crash):
        cri.poll(t)
    abandon(t)
    rotated = cri.output.with_name(cri.output.name + ".20261123-100000")
    cri.output.rename(rotated)
    cri.append(b"after\n")
    cri.drain(cri.tailer())
    # A torn batch is completed where its start is (the rotated file); an unwritten one goes to the new file.
    assert rotated.read_bytes().endswith(b"the batch\n" if torn else b"before\n")
    assert cri.rebuilt(rotated, cri.output) == cri.expected()


def test_interrupted_batch_whose_output_was_compressed_away(
    cri: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    t = cri.tailer()
    cri.append(b"batch\n")
    with crash_in_write(monkeypatch, 0), pytest.raises(Crash):
        cri.poll(t)
    abandon(t)
    # Rotated and compressed: the old inode cannot be appended to (kept alive here so that the new output
    # does not get its number, which ext4 would hand out again at once).
    cri.output.rename(cri.output.with_name(cri.output.name + ".20261123-100000.gz"))
    with caplog.at_level(logging.WARNING):
        cri.drain(cri.tailer())
    assert "assuming it was written" in caplog.text
    assert not cri.output.exists() or cri.output.read_bytes() == b""


def newest_slot(env: Env) -> Path:
    return max(env.state.glob("*.json"), key=lambda p: int(p.read_text().split('"seq":')[1].split(",")[0]))


def test_corrupt_commit_falls_back_to_its_intent_exactly(env: Env) -> None:
    t = env.tailer()
    for i in range(5):
        env.append(b"line %d\n" % i)
        env.poll(t)
    t.close()  # the newest record is a commit, the one before it the intent of the same batch
    newest = newest_slot(env)
    newest.write_bytes(newest.read_bytes()[:40])  # found corrupt
    env.append(b"line 5\n")
    env.drain(env.tailer())
    assert env.rebuilt() == env.expected()


def test_corrupt_intent_falls_back_losing_nothing(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """The newest record is the intent of the last batch, written; lost, the previous intent is used: the
    last batch comes twice (logged), nothing is lost. A kill cannot do this, only outside damage."""
    t = env.tailer()
    for i in range(5):
        env.append(b"line %d\n" % i)
        env.poll(t)
    abandon(t)
    newest = newest_slot(env)
    newest.write_bytes(b"\0" * len(newest.read_bytes()))
    env.append(b"line 5\n")
    with caplog.at_level(logging.WARNING):
        env.drain(env.tailer())
    assert "output size is not what the checkpoint expects" in caplog.text
    assert env.rebuilt() == env.expected(b"line 0\nline 1\nline 2\nline 3\nline 4\nline 4\nline 5\n")


def test_state_dir_failure_blocks_then_resumes(cri: Env, caplog: pytest.LogCaptureFixture) -> None:
    t = cri.tailer()
    cri.append(b"one\n")
    cri.poll(t)
    shutil.rmtree(cri.state)
    cri.append(b"two\n")
    with caplog.at_level(logging.ERROR):
        p = cri.poll(t)
        assert p.status is Status.BLOCKED and "checkpoint" in (p.error or "")
        cri.poll(t)
    assert caplog.text.count("cannot save checkpoint") == 1  # logged once, not on every poll
    cri.state.mkdir()
    assert cri.poll(t).status is Status.ACTIVE
    assert cri.rebuilt() == cri.expected()
