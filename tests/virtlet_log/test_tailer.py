"""Tests of the tailer: every byte of the source in the output exactly once, across crashes and rotations.

Each test works on real files and asserts on content: the output is parsed with the independent kubelet
checker, rebuilt into console text and compared with what was written to the source (CRLF folded; for JSON,
decoded as Go does). A crash is a :class:`Crash` raised from inside the real write path (it is not an
``OSError``, so nothing in the tailer catches it), after which the tailer is abandoned without saving, as
``kill -9`` would leave it; the real ``kill -9`` tests are at the end and drive a separate process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stats_log_collector.virtlet_log import output as output_module
from stats_log_collector.virtlet_log.checkpoint import (
    Checkpoint,
    CheckpointStore,
    Intent,
    fingerprint,
)
from stats_log_collector.virtlet_log.fileid import HEAD_BYTES
from stats_log_collector.virtlet_log.formats import LineAssembler, encode_cri, format_timestamp, go_decode
from stats_log_collector.virtlet_log.tailer import Progress, Status, Tailer
from tests.kubelet_logs import read_log_file, rebuild

FAULTS = Path(__file__).parent / "faults"


class Crash(BaseException):
    """The process dies here."""


class Env:
    """A source, its output, a state directory, and a clock for the idle flush."""

    def __init__(self, root: Path, fmt: str = "cri") -> None:
        self.fmt = fmt
        self.source = root / "vms" / "uid-1" / "vm_0.log"
        self.output = root / "pods" / "uid-1" / "vm_0.log"
        self.state = root / "state"
        for d in (self.source.parent, self.output.parent, self.state):
            d.mkdir(parents=True, exist_ok=True)
        self.source.touch()
        self.now = 1000.0
        self.written = b""  # everything ever appended to the source, in order

    def tailer(self, **kwargs: Any) -> Tailer:
        kwargs.setdefault("fmt", self.fmt)
        return Tailer(self.source, self.output, CheckpointStore(self.state), **kwargs)

    def append(self, data: bytes, path: Path | None = None) -> None:
        with open(path or self.source, "ab") as f:
            f.write(data)
        self.written += data

    def poll(self, tailer: Tailer, advance: float = 0.0) -> Progress:
        self.now += advance
        return tailer.poll(self.now)

    def drain(self, tailer: Tailer) -> Progress:
        """Poll until nothing moves (the idle flush included)."""
        for _ in range(1000):
            p = self.poll(tailer, 2.0)
            if not (p.read or p.written or p.more):
                return p
        raise AssertionError("tailer does not settle")

    def rebuilt(self, *outputs: Path) -> bytes:
        return b"".join(rebuild(read_log_file(p, expect=self.fmt)) for p in outputs or (self.output,))  # type: ignore[arg-type]

    def expected(self, data: bytes | None = None) -> bytes:
        text = (self.written if data is None else data).replace(b"\r\n", b"\n")
        return go_decode(text).encode() if self.fmt == "json" else text

    def checkpoint(self) -> Checkpoint | None:
        return CheckpointStore(self.state).load(str(self.source))


def assert_same(got: bytes, expected: bytes) -> None:
    """Equality, reported as the first difference with its surroundings (the inputs are megabytes)."""
    if got == expected:
        return
    at = next(
        (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
        min(len(got), len(expected)),
    )
    raise AssertionError(
        f"differ at byte {at} of {len(got)} (expected {len(expected)}):\n"
        f"got      {got[max(0, at - 80) : at + 80]!r}\nexpected {expected[max(0, at - 80) : at + 80]!r}"
    )


def abandon(tailer: Tailer) -> None:
    """Drop a tailer as a killed process would: no checkpoint saved, descriptors closed."""
    tailer._release()


@pytest.fixture(params=["cri", "json"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Env:
    return Env(tmp_path, request.param)


@pytest.fixture
def cri(tmp_path: Path) -> Env:
    return Env(tmp_path, "cri")


# A console sample with the awkward parts: CRLF, escape codes, empty lines, invalid UTF-8, a long line.
SAMPLE = (
    b"\x1b[2J\x1b[01;01HSeaBIOS (version 1.16)\r\n"
    b"Booting from ROM...\r\n\r\n"
    b"caf\xc3\xa9 \xff\xfe bad bytes \xe2\x82\r\n" + b"x" * 40000 + b"\r\n" + b'quotes " and \\ and \t tabs\n'
)


# ---------------------------------------------------------------------------------------------------------
# Plain following


def test_follows_a_growing_file(env: Env) -> None:
    t = env.tailer()
    env.append(SAMPLE)
    p = env.poll(t)
    assert p.status is Status.ACTIVE and p.read == len(SAMPLE) and p.pieces > 5
    for i in range(50):
        env.append(b"line %d\r\n" % i)
        env.poll(t)
    assert env.rebuilt() == env.expected()


def test_long_line_is_cut_into_16k_pieces(cri: Env) -> None:
    t = cri.tailer()
    cri.append(b"y" * 40000 + b"\n")
    cri.poll(t)
    entries = read_log_file(cri.output, expect="cri")
    assert [len(e.text) for e in entries] == [16384, 16384, 40000 - 32768 + 1]
    assert [e.partial for e in entries] == [True, True, False]


def test_unterminated_line_waits_for_newline_or_idle_second(cri: Env) -> None:
    t = cri.tailer()
    cri.append(b"login: ")
    p = cri.poll(t)
    assert p.written == 0 and p.flush_at == pytest.approx(cri.now + 1.0)
    assert cri.poll(t, 0.5).written == 0
    p = cri.poll(t, 0.6)  # 1.1 s idle: written as a partial piece
    assert p.pieces == 1 and p.flush_at is None
    cri.append(b"root\r\n")
    cri.poll(t)
    entries = read_log_file(cri.output, expect="cri")
    assert [(e.partial, e.text) for e in entries] == [(True, b"login: "), (False, b"root\n")]


def test_budget_limits_one_poll(cri: Env) -> None:
    t = cri.tailer(chunk_bytes=4096, poll_budget=10000)
    cri.append(b"z" * 99 + b"\n" * 1 + (b"a" * 99 + b"\n") * 500)
    p = cri.poll(t)
    assert p.more and p.read < 20000 and p.behind > 0
    cri.drain(t)
    assert cri.rebuilt() == cri.expected()


def test_progress_behind_counts_unread_bytes(cri: Env) -> None:
    t = cri.tailer(chunk_bytes=1000, poll_budget=1000)
    cri.append(b"q" * 4999 + b"\n")
    p = cri.poll(t)
    assert p.behind == 4000


# ---------------------------------------------------------------------------------------------------------
# Restarts: checkpoints and the write-ahead intent


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


@contextlib.contextmanager
def crash_in_write(monkeypatch: pytest.MonkeyPatch, after_bytes: int) -> Iterator[None]:
    """The next output write puts ``after_bytes`` of its data on disk, then the process dies."""
    real = output_module.write_some

    def dying_write(fd: int, data: memoryview) -> int:
        if after_bytes:
            real(fd, data[:after_bytes])
        raise Crash

    monkeypatch.setattr(output_module, "write_some", dying_write)
    yield
    monkeypatch.setattr(output_module, "write_some", real)


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
    CheckpointStore(cri.state).save(
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


# ---------------------------------------------------------------------------------------------------------
# Source rotation, truncation, reuse, deletion


def rename_rotate(env: Env, keep: int = 5) -> None:
    """logrotate-style: x.log.N -> x.log.N+1, x.log -> x.log.1, a new empty x.log."""
    base = env.source
    for n in range(keep, 0, -1):
        older = base.with_name(f"{base.name}.{n}")
        if older.exists():
            older.rename(base.with_name(f"{base.name}.{n + 1}"))
    base.rename(base.with_name(base.name + ".1"))
    base.touch()


def copy_truncate(env: Env) -> None:
    base = env.source
    for n in range(5, 0, -1):
        older = base.with_name(f"{base.name}.{n}")
        if older.exists():
            older.rename(base.with_name(f"{base.name}.{n + 1}"))
    shutil.copyfile(base, base.with_name(base.name + ".1"))
    os.truncate(base, 0)


def test_rename_rotation_reads_the_old_file_to_its_end(env: Env) -> None:
    """fluent-bit#2110 and #5382: the rest of the old file, then the new one from its start."""
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
    real = Tailer._open_siblings
    calls: list[int] = []

    def rotating_meanwhile(self: Tailer, exclude: Any) -> Any:
        if not calls:
            copy_truncate(cri)
            cri.append(line % b"C1")
        calls.append(1)
        return real(self, exclude)

    monkeypatch.setattr(Tailer, "_open_siblings", rotating_meanwhile)
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
    assert caplog.text.count("source unusable") == 1
    if kind == "directory":
        cri.source.rmdir()
    else:
        cri.source.unlink()
    cri.append(b"now a file\n")
    assert cri.poll(t).status is Status.ACTIVE
    assert cri.rebuilt() == b"now a file\n"


# ---------------------------------------------------------------------------------------------------------
# The output: kubelet rotation, pod deletion, format


def test_output_renamed_away_by_kubelet_is_reopened(env: Env) -> None:
    t = env.tailer()
    env.append(b"one\n")
    env.poll(t)
    rotated = env.output.with_name(env.output.name + ".20261123-100000")
    env.output.rename(rotated)
    env.poll(t)  # noticed even with nothing to write: kubectl logs finds the path again
    assert env.output.exists()
    env.append(b"two\n")
    env.poll(t)
    assert env.rebuilt(rotated) == b"one\n"
    assert env.rebuilt(rotated, env.output) == env.expected()


def test_output_deleted_is_recreated(cri: Env) -> None:
    t = cri.tailer()
    cri.append(b"one\n")
    cri.poll(t)
    cri.output.unlink()
    cri.append(b"two\n")
    cri.poll(t)
    assert cri.rebuilt() == b"two\n"


def test_output_directory_deleted_stops(cri: Env) -> None:
    t = cri.tailer()
    cri.append(b"one\n")
    cri.poll(t)
    shutil.rmtree(cri.output.parent)
    cri.append(b"two\n")
    p = cri.poll(t)
    assert p.status is Status.STOPPED
    assert t._out.fd is None and t._cur is None
    assert not cri.output.parent.exists()  # never created by us
    assert cri.poll(t).status is Status.STOPPED


def test_output_directory_missing_at_start(cri: Env) -> None:
    shutil.rmtree(cri.output.parent)
    assert cri.poll(cri.tailer()).status is Status.STOPPED


@pytest.mark.parametrize(
    "existing", [b'{"log":"x\\n","stream":"stdout","time":"2026-11-23T10:00:00Z"}\n', b"junk\n"]
)
def test_output_in_another_format_is_refused(
    cri: Env, existing: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cri.output.write_bytes(existing)
    cri.append(b"line\n")
    t = cri.tailer()
    with caplog.at_level(logging.ERROR):
        p = cri.poll(t)
        cri.poll(t)
    assert p.status is Status.BLOCKED and "not mixing formats" in (p.error or "")
    assert caplog.text.count("not mixing formats") == 1
    assert cri.output.read_bytes() == existing
    cri.output.unlink()
    assert cri.poll(t).status is Status.ACTIVE
    assert cri.rebuilt() == b"line\n"


def test_existing_output_in_the_same_format_is_appended_to(env: Env) -> None:
    t = env.tailer()
    env.append(b"first run\n")
    env.poll(t)
    t.close()
    shutil.rmtree(env.state)  # a logger without its state: it starts over, but appends
    env.state.mkdir()
    before = env.output.read_bytes()
    env.drain(env.tailer())
    assert env.output.read_bytes().startswith(before)


# ---------------------------------------------------------------------------------------------------------
# Full disk, on a real small filesystem


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN): {exc}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Take every free byte of the filesystem."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("crash_while_full", [False, True])
def test_full_disk_blocks_and_loses_nothing(
    tmp_path: Path, small_fs: Path, caplog: pytest.LogCaptureFixture, crash_while_full: bool
) -> None:
    env = Env(tmp_path, "cri")
    env.output = small_fs / "uid-1" / "vm_0.log"
    env.output.parent.mkdir()
    t = env.tailer()
    env.append(b"before the disk filled up\n")
    env.poll(t)
    filler = fill(small_fs)
    for i in range(400):  # ~100 KiB, in one batch
        env.append(b"%06d " % i + b"m" * 200 + b"\r\n")
    with caplog.at_level(logging.ERROR):
        p = env.poll(t)
        assert p.status is Status.BLOCKED and "disk full" in (p.error or "")
        assert env.poll(t).status is Status.BLOCKED
    assert caplog.text.count("output disk full") == 1  # logged once, retried on every poll
    if crash_while_full:  # killed while blocked: the intent on disk covers the batch, maybe torn
        abandon(t)
        t = env.tailer()
        assert env.poll(t).status is Status.BLOCKED
    env.append(b"written while full\n")
    filler.unlink()
    with caplog.at_level(logging.INFO):
        env.drain(t)
    assert "resumed" in caplog.text
    assert env.rebuilt() == env.expected()


# ---------------------------------------------------------------------------------------------------------
# Real processes: kill -9 at random moments under a steady writer, rotation under load


def spawn(script: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(FAULTS / script), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def spawn_driver(env: Env, *extra: str) -> subprocess.Popen[bytes]:
    """The tailer in its own process, logging to ``driver.log`` next to the state directory."""
    log = env.state.parent / "driver.log"
    return spawn(
        "driver.py", str(env.source), str(env.output), str(env.state), env.fmt, "--log", str(log), *extra
    )


def spawn_writer(env: Env, record: Path, *extra: str) -> subprocess.Popen[bytes]:
    return spawn("writer.py", str(env.source), str(record), *extra)


def run_driver_until_caught_up(env: Env) -> None:
    driver = spawn_driver(env, "--until-idle")
    _, err = driver.communicate(timeout=30)
    assert driver.returncode == 0, err.decode()


def kill_loop(env: Env, writer: subprocess.Popen[bytes], kills: int, rng: random.Random) -> int:
    """Start the driver and ``kill -9`` it at a random moment, again and again while the writer runs and at
    least ``kills`` times; returns how many kills there were."""
    done = 0
    while done < kills or writer.poll() is None:
        driver = spawn_driver(env)
        time.sleep(rng.uniform(0.05, 0.3))
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        done += 1
    return done


def finish(env: Env, writer: subprocess.Popen[bytes], record: Path) -> None:
    """Wait for the writer, then let one last driver catch up."""
    _, err = writer.communicate(timeout=30)
    assert writer.returncode == 0, err.decode()
    env.written = record.read_bytes()
    run_driver_until_caught_up(env)


def wait_for_output(env: Env, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not (env.output.exists() and env.output.stat().st_size):
        assert time.monotonic() < deadline, "the driver wrote nothing"
        time.sleep(0.01)


def prime(env: Env, record: Path) -> subprocess.Popen[bytes]:
    """A first line, followed by a running driver: from then on a checkpoint exists.

    Without it a rotation could happen before any driver saved a checkpoint, and a tailer that has none
    rightly starts with the current file, not with rotated files it never knew.
    """
    record.write_bytes(b"ready\n")
    env.append(b"ready\n")
    driver = spawn_driver(env)
    wait_for_output(env)
    return driver


@pytest.mark.parametrize("fmt", ["cri", "json"])
def test_kill_9_loop_under_a_steady_writer(tmp_path: Path, fmt: str) -> None:
    env = Env(tmp_path, fmt)
    record = tmp_path / "written.bin"
    writer = spawn_writer(env, record, "--lines", "6000", "--rate", "1500")
    kills = kill_loop(env, writer, 20, random.Random(fmt))
    finish(env, writer, record)
    assert kills >= 20
    assert len(env.written) > 1_000_000
    assert_same(env.rebuilt(), env.expected())


@pytest.mark.parametrize("mode", ["rename", "copytruncate"])
def test_rotation_under_load_with_kills(tmp_path: Path, mode: str) -> None:
    env = Env(tmp_path, "cri")
    record = tmp_path / "written.bin"
    first = prime(env, record)
    first.send_signal(signal.SIGKILL)
    first.wait()
    writer = spawn_writer(
        env, record, "--lines", "3000", "--rate", "1500", "--rotate", mode, "--rotate-every", "300"
    )
    kill_loop(env, writer, 8, random.Random(mode))
    finish(env, writer, record)
    assert len(list(env.source.parent.glob("vm_0.log.*"))) == 9
    assert_same(env.rebuilt(), env.expected())


@pytest.mark.parametrize("mode", ["rename", "copytruncate"])
def test_driver_follows_rotation_live(tmp_path: Path, mode: str) -> None:
    env = Env(tmp_path, "json")
    record = tmp_path / "written.bin"
    driver = prime(env, record)
    writer = spawn_writer(
        env, record, "--lines", "3000", "--rate", "3000", "--rotate", mode, "--rotate-every", "200"
    )
    try:
        _, err = writer.communicate(timeout=30)
        assert writer.returncode == 0, err.decode()
        env.written = record.read_bytes()
        deadline = time.monotonic() + 10
        while env.rebuilt() != env.expected() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert_same(env.rebuilt(), env.expected())


def test_kill_at_each_step_of_a_batch(tmp_path: Path) -> None:
    """The driver kills itself right after each step of a batch in turn: deterministic crash points.

    fluent-bit#5912 lost lines when the offset was saved before delivery; here every crash point is tried.
    """
    env = Env(tmp_path, "cri")
    rng = random.Random(7)
    points = ["after-intent", "mid-write", "after-write", "after-commit"]
    for i in range(12):
        env.append(
            b"".join(b"batch %d line %d %s\r\n" % (i, j, b"w" * rng.randrange(0, 3000)) for j in range(30))
        )
        driver = spawn_driver(env, "--die", points[i % 4])
        driver.wait(timeout=20)
        assert driver.returncode == -signal.SIGKILL
    run_driver_until_caught_up(env)
    assert_same(env.rebuilt(), env.expected())
