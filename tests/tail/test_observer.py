"""The engine reports what happens to its observer: each event once, with the right files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from stats_log_collector.tail.observer import Block, BlockKind, Observer, RepairAction
from stats_log_collector.tail.slot_store import SlotFileStore
from stats_log_collector.tail.tailer import Status
from tests.tail.tailing import (
    Crash,
    Env,
    abandon,
    copy_truncate,
    crash_in_write,
    rename_rotate,
    written_then_forgotten,
)


class Recorder(Observer):
    """Keeps the events it is told about, as (name, arguments)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for event, args in self.events if event == name]

    def rotated(self, source: str, file: str, offset: int) -> None:
        self.events.append(("rotated", (source, file, offset)))

    def truncated(self, source: str, offset: int, copy: str | None) -> None:
        self.events.append(("truncated", (source, offset, copy)))

    def finished(self, source: str) -> None:
        self.events.append(("finished", (source,)))

    def output_gone(self, source: str, output: Path) -> None:
        self.events.append(("output_gone", (source, output)))

    def blocked(self, source: str, output: Path, block: Block) -> None:
        self.events.append(("blocked", (source, output, block.kind)))

    def unblocked(self, source: str, block: Block) -> None:
        self.events.append(("unblocked", (source, block.kind)))

    def resumed_in_rotated(self, source: str, file: str, offset: int, then: int) -> None:
        self.events.append(("resumed_in_rotated", (source, file, offset, then)))

    def batch_repaired(self, source: str, action: RepairAction) -> None:
        self.events.append(("batch_repaired", (source, action)))

    def checkpoint_corrupt(self, path: Path, error: str) -> None:
        self.events.append(("checkpoint_corrupt", (path,)))

    def resumed_from_output(self, source: str, output: str, offset: int) -> None:
        self.events.append(("resumed_from_output", (source, output, offset)))

    def output_end_not_found(self, source: str, output: str, why: str) -> None:
        self.events.append(("output_end_not_found", (source, output)))


def test_the_base_observer_ignores_every_event() -> None:
    observer = Observer()
    for name, value in vars(Observer).items():
        if callable(value) and not name.startswith("_"):
            arity = value.__code__.co_argcount - 1
            assert getattr(observer, name)(*[None] * arity) is None, name


def test_rotation_is_reported_once_with_the_new_file(cri: Env) -> None:
    recorder = Recorder()
    t = cri.tailer(observer=recorder)
    cri.append(b"old\n")
    cri.poll(t)
    rename_rotate(cri)
    cri.append(b"new\n")
    cri.drain(t)
    source = str(cri.source)
    assert recorder.named("rotated") == [(source, source, 0)]
    assert recorder.named("truncated") == [] and recorder.named("blocked") == []


def test_a_restart_after_two_rotations_resumes_in_the_oldest(cri: Env) -> None:
    t = cri.tailer()
    cri.append(b"A1\n" * 30)
    cri.poll(t)
    t.close()
    cri.append(b"A2\n")
    rename_rotate(cri)
    cri.append(b"B1\n")
    rename_rotate(cri)
    recorder = Recorder()
    cri.drain(cri.tailer(observer=recorder))
    source, offset = str(cri.source), len(b"A1\n" * 30)
    assert recorder.named("resumed_in_rotated") == [(source, source + ".2", offset, 2)]
    assert recorder.named("rotated") == [(source, source + ".1", 0), (source, source, 0)]


def test_copytruncate_is_reported_with_its_copy(cri: Env) -> None:
    recorder = Recorder()
    t = cri.tailer(observer=recorder)
    cri.append(b"before the truncation\n")
    cri.poll(t)
    cri.append(b"more\n")
    copy_truncate(cri)
    cri.drain(t)
    assert recorder.named("truncated") == [
        (str(cri.source), len(b"before the truncation\n"), f"{cri.source}.1")
    ]


def test_a_block_is_reported_once_and_its_end_once(cri: Env) -> None:
    cri.output.write_bytes(b'{"log":"json\\n","stream":"stdout","time":"2026-01-01T00:00:00Z"}\n')
    cri.append(b"line\n")
    recorder = Recorder()
    t = cri.tailer(observer=recorder)
    for _ in range(3):
        assert cri.poll(t).status is Status.BLOCKED
    cri.output.unlink()
    cri.poll(t)
    cri.poll(t)
    source = str(cri.source)
    assert recorder.named("blocked") == [(source, cri.output, BlockKind.MIXED_FORMAT)]
    assert recorder.named("unblocked") == [(source, BlockKind.MIXED_FORMAT)]


def test_deletion_and_pod_deletion(tmp_path: Path) -> None:
    deleted, pod_gone = Env(tmp_path / "a"), Env(tmp_path / "b")
    recorder = Recorder()
    for env in (deleted, pod_gone):
        t = env.tailer(observer=recorder)
        env.append(b"one\n")
        env.poll(t)
        if env is deleted:
            env.source.unlink()
        else:
            shutil.rmtree(env.output.parent)
            env.append(b"two\n")
        env.poll(t)
        env.poll(t)
    assert recorder.named("finished") == [(str(deleted.source),)]
    assert recorder.named("output_gone") == [(str(pod_gone.source), pod_gone.output)]


def test_recovery_of_an_unwritten_batch_is_reported(cri: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    t = cri.tailer()
    cri.append(b"one\n")
    with crash_in_write(monkeypatch, 0), pytest.raises(Crash):
        cri.poll(t)
    abandon(t)
    recorder = Recorder()
    cri.drain(cri.tailer(observer=recorder))
    assert recorder.named("batch_repaired") == [(str(cri.source), RepairAction.WRITE)]
    assert cri.rebuilt() == cri.expected()


def test_the_slot_store_reports_a_corrupt_slot(tmp_path: Path) -> None:
    recorder = Recorder()
    source = str(tmp_path / "x.log")
    (tmp_path / f"{SlotFileStore.key(source)}.a.json").write_bytes(b"garbage")
    assert SlotFileStore(tmp_path, observer=recorder).load(source) is None
    assert recorder.named("checkpoint_corrupt") == [(tmp_path / f"{SlotFileStore.key(source)}.a.json",)]


def test_a_source_swapped_for_a_link_is_refused_once_and_not_read(cri: Env, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret\n")
    recorder = Recorder()
    t = cri.tailer(observer=recorder)
    cri.append(b"one\n")
    cri.poll(t)
    link = cri.source.with_name("link")
    link.symlink_to(secret)
    link.rename(cri.source)
    for _ in range(3):
        assert cri.poll(t).status is Status.BLOCKED
    assert recorder.named("blocked") == [(str(cri.source), cri.output, BlockKind.SOURCE_REFUSED)]
    assert cri.rebuilt() == b"one\n"


def test_a_start_without_checkpoint_is_reported(cri: Env) -> None:
    written_then_forgotten(cri, b"one\r\ntwo\r\n")
    recorder = Recorder()
    cri.drain(cri.tailer(observer=recorder))
    assert recorder.named("resumed_from_output") == [(str(cri.source), str(cri.output), 10)]
    cri.source.unlink()
    cri.append(b"other\n")  # a new file: what the output ends with is not in it
    for slot in cri.state.glob("*.json"):
        slot.unlink()
    recorder = Recorder()
    cri.drain(cri.tailer(observer=recorder))
    assert recorder.named("output_end_not_found") == [(str(cri.source), str(cri.output))]
    assert cri.rebuilt() == b"one\ntwo\nother\n"
