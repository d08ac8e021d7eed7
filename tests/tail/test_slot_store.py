"""The slot-file checkpoint store: two slots saved in turn, CRC, fallback to the previous good record.

The fallback matters because a checkpoint found corrupt after a crash (vector#20753) must neither stop the
logger nor make it start over (which would duplicate the whole output): the other slot holds the record
saved just before, which recovery can always continue from.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from stats_log_collector.tail.checkpoint import Checkpoint, Intent
from stats_log_collector.tail.slot_store import SlotFileStore
from stats_log_collector.tail_log import LoggingObserver
from tests.tail.tailing import make_checkpoint

SOURCE = "/var/log/vms/uid-1/vm_0.log"
#: The store's events as log lines, so that tests can assert on them (caplog).
OBSERVER = LoggingObserver(logging.getLogger(__name__))


def store_in(directory: Path) -> SlotFileStore:
    return SlotFileStore(directory, observer=OBSERVER)


def record(offset: int, intent: Intent | None = None, source: str = SOURCE) -> Checkpoint:
    return make_checkpoint(offset, intent, source, output_size=offset * 2)


INTENT_JSON = {
    "read_end": 1,
    "batch_end": 1,
    "time_ns": 1,
    "flush": "none",
    "output_size_before": 0,
    "length": 1,
}


def slots(store: SlotFileStore) -> list[Path]:
    return sorted(store.directory.glob(f"{SlotFileStore.key(SOURCE)}.*.json"))


def decoded(path: Path) -> dict[str, Any]:
    body = path.read_bytes().partition(b"\n")[0]  # the JSON body is the first line
    obj: dict[str, Any] = json.loads(body)
    return obj


def offset_in(path: Path) -> int:
    return int(decoded(path)["checkpoint"]["offset"])


def newest_slot(store: SlotFileStore) -> Path:
    return max(slots(store), key=lambda p: decoded(p)["seq"])


def test_round_trip_with_and_without_intent(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    assert store.load(SOURCE) is None
    intent = Intent(read_end=120, batch_end=110, time_ns=5, flush="idle", output_size_before=200, length=77)
    store.save(record(100, intent))
    assert store_in(tmp_path).load(SOURCE) == record(100, intent)
    store.save(record(110))
    assert store_in(tmp_path).load(SOURCE) == record(110)


def test_saves_alternate_between_two_slots(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    for offset in range(5):
        store.save(record(offset))
    assert [p.name.split(".")[1] for p in slots(store)] == ["a", "b"]
    assert not list(tmp_path.glob("*.tmp"))
    # A new store instance continues the sequence: its save replaces the older slot.
    other = store_in(tmp_path)
    other.save(record(5))
    assert store_in(tmp_path).load(SOURCE) == record(5)
    assert {offset_in(p) for p in slots(store)} == {4, 5}  # the previous record is kept


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[:100],  # cut inside the record (a save interrupted)
        lambda raw: raw[:100] + b" " * 924,  # the start of a new record over an old one
        lambda raw: b"",  # empty
        lambda raw: raw.replace(b'"offset":2', b'"offset":9'),  # a flipped digit: the CRC catches it
        lambda raw: b"\x00" * len(raw),  # zeroed blocks after a power cut
    ],
)
def test_corrupt_newest_slot_falls_back_to_the_previous_one(tmp_path: Path, damage, caplog) -> None:
    store = store_in(tmp_path)
    store.save(record(1))
    store.save(record(2))
    newest = newest_slot(store)
    newest.write_bytes(damage(newest.read_bytes()))
    with caplog.at_level(logging.WARNING):
        assert store_in(tmp_path).load(SOURCE) == record(1)
    assert "corrupt checkpoint" in caplog.text


def test_saving_after_a_corrupt_slot_keeps_the_good_one(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.save(record(1))
    store.save(record(2))
    newest = newest_slot(store)
    newest.write_bytes(b"garbage")
    fresh = store_in(tmp_path)
    assert fresh.load(SOURCE) == record(1)
    fresh.save(record(3))  # must replace the corrupt slot, not the good one
    assert store_in(tmp_path).load(SOURCE) == record(3)
    newest = newest_slot(store)
    newest.write_bytes(b"garbage")
    assert store_in(tmp_path).load(SOURCE) == record(1)


def test_both_slots_corrupt_means_no_checkpoint(tmp_path: Path, caplog) -> None:
    store = store_in(tmp_path)
    store.save(record(1))
    store.save(record(2))
    for path in slots(store):
        path.write_bytes(b"{")
    with caplog.at_level(logging.WARNING):
        assert store_in(tmp_path).load(SOURCE) is None
    assert caplog.text.count("corrupt checkpoint") == 2


def test_failed_write_keeps_the_newest_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = store_in(tmp_path)
    store.save(record(1))
    store.save(record(2))
    newest = newest_slot(store)
    before = newest.read_bytes()
    real_pwrite = os.pwrite

    def short_pwrite(fd: int, data: bytes, offset: int) -> int:
        return real_pwrite(fd, data[:10], offset)  # the disk filled up after 10 bytes

    monkeypatch.setattr(os, "pwrite", short_pwrite)
    with pytest.raises(OSError) as raised:
        store.save(record(3))
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert newest.read_bytes() == before  # only the older slot was touched
    assert store_in(tmp_path).load(SOURCE) == record(2)
    store.save(record(3))  # the next save goes to the same (damaged) slot
    assert store_in(tmp_path).load(SOURCE) == record(3)
    assert newest.read_bytes() == before


def test_shorter_record_over_a_longer_one(tmp_path: Path) -> None:
    """Slots are overwritten in place, never truncated: what is left of a longer record must not matter."""
    store = store_in(tmp_path)
    long = dataclasses.replace(record(1), output="/" + "p" * 3000)
    store.save(long)
    store.save(record(2))
    store.save(record(3))  # over the long one
    assert store_in(tmp_path).load(SOURCE) == record(3)
    assert all(p.stat().st_size % 1024 == 0 for p in slots(store))
    store.save(record(4))
    (tmp_path / f"{SlotFileStore.key(SOURCE)}.b.json").write_bytes(b"")  # the newest lost
    assert store_in(tmp_path).load(SOURCE) == record(3)


def test_full_state_dir_raises(tmp_path: Path) -> None:
    store = store_in(tmp_path / "missing")
    with pytest.raises(OSError):
        store.save(record(1))


def test_forget_and_list(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.save(record(1))
    store.save(record(2))
    store.save(record(7, source="/other.log"))
    assert sorted(store.sources()) == ["/other.log", SOURCE]
    store.forget(SOURCE)
    assert store.load(SOURCE) is None
    assert list(store.sources()) == ["/other.log"]
    store.save(record(3))  # a new start after forgetting
    assert store.load(SOURCE) == record(3)


def test_record_of_another_source_is_ignored(tmp_path: Path, caplog) -> None:
    store = store_in(tmp_path)
    store.save(record(1, source="/a.log"))
    # Pretend "/b.log" hashed to the same name.
    key_a, key_b = SlotFileStore.key("/a.log"), SlotFileStore.key("/b.log")
    for path in tmp_path.glob(f"{key_a}.*"):
        path.rename(tmp_path / path.name.replace(key_a, key_b))
    with caplog.at_level(logging.WARNING):
        assert store.load("/b.log") is None
    assert "another source" in caplog.text


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        {},
        {**record(1).to_json(), "offset": -1},
        {**record(1).to_json(), "offset": "1"},
        {**record(1).to_json(), "offset": True},
        {**record(1).to_json(), "source": None},
        {**record(1).to_json(), "intent": {"read_end": 1}},
        {**record(1).to_json(), "intent": "x"},
        {**record(1).to_json(), "intent": {**INTENT_JSON, "flush": "sometimes"}},
        {**record(1).to_json(), "intent": {**INTENT_JSON, "length": -1}},
    ],
)
def test_invalid_records_are_rejected(obj) -> None:
    with pytest.raises(ValueError):
        Checkpoint.from_json(obj)


def test_source_path_with_undecodable_bytes(tmp_path: Path) -> None:
    source = os.fsdecode(b"/var/log/vms/\xff/vm_0.log")
    store = store_in(tmp_path)
    store.save(record(1, source=source))
    assert store_in(tmp_path).load(source) == record(1, source=source)
