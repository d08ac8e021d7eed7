"""The in-memory checkpoint store: what console-tail uses without a state file."""

from __future__ import annotations

import dataclasses

from stats_log_collector.tail.checkpoint import Checkpoint, CheckpointStore, Intent, MemoryStore
from tests.tail.tailing import Env, make_checkpoint

SOURCE = "/var/run/kubevirt-private/uid/virt-serial0-log"


def record(offset: int, source: str = SOURCE, intent: Intent | None = None) -> Checkpoint:
    return make_checkpoint(offset, intent, source)


def test_keeps_the_last_record_of_each_source() -> None:
    store: CheckpointStore = MemoryStore()
    assert store.load(SOURCE) is None
    intent = Intent(read_end=20, batch_end=15, time_ns=1, flush="idle", output_size_before=5, length=9)
    store.save(record(10, intent=intent))
    assert store.load(SOURCE) == record(10, intent=intent)
    store.save(record(15))
    store.save(record(3, source="/other"))
    assert store.load(SOURCE) == record(15)
    assert sorted(store.sources()) == ["/other", SOURCE]


def test_forget() -> None:
    store = MemoryStore()
    store.save(record(1))
    store.forget(SOURCE)
    store.forget(SOURCE)  # forgetting what is not there is fine
    assert store.load(SOURCE) is None and list(store.sources()) == []


def test_a_new_store_knows_nothing() -> None:
    MemoryStore().save(record(1))
    assert MemoryStore().load(SOURCE) is None


def test_sources_may_be_forgotten_while_listed() -> None:
    store = MemoryStore()
    for n in range(3):
        store.save(dataclasses.replace(record(n), source=f"/s{n}"))
    for source in store.sources():
        store.forget(source)
    assert list(store.sources()) == []


def test_a_new_tailer_on_the_same_store_goes_on_where_the_last_one_stopped(cri: Env) -> None:
    """console-tail makes a new tailer when a source is finished; the store outlives each tailer."""
    store = MemoryStore()
    first = cri.tailer(store=store)
    cri.append(b"one\ntwo unterminated")
    cri.poll(first)
    first.close()
    cri.append(b" and done\n")
    cri.drain(cri.tailer(store=store))
    assert cri.rebuilt() == cri.expected()
    saved = store.load(str(cri.source))
    assert saved is not None and saved.offset == len(cri.written) and saved.intent is None
    assert not list(cri.state.iterdir())  # nothing on disk
