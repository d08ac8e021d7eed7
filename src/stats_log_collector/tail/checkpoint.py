"""Per-source checkpoints with a write-ahead intent, and the store interface that keeps them.

A checkpoint says how far a source is in its output and which file that offset is in (identity plus content
fingerprints); its :class:`Intent` describes the batch about to be appended, so that a crash can be repaired
exactly. Why and how: docs/tailing.md. Two stores: :class:`~.slot_store.SlotFileStore` (files that survive
a restart) and :class:`MemoryStore` (a run's lifetime only).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from typing import Any, Final, Literal, Protocol

__all__ = [
    "MARK_BYTES",
    "Checkpoint",
    "CheckpointStore",
    "FlushMode",
    "Intent",
    "MemoryStore",
    "fingerprint",
]

#: How the assembler was flushed at the end of a batch: not at all, idle (a trailing ``\\r`` and an
#: unfinished UTF-8 character stay held) or final (everything emitted: the source is finished).
FlushMode = Literal["none", "idle", "final"]
_FLUSH_MODES: Final = ("none", "idle", "final")


def fingerprint(data: bytes) -> str:
    """A short content hash, used for the head of a source and the bytes just before its offset."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class Intent:
    """The batch about to be appended, recorded before the write so a crash can be repaired exactly.

    The batch is ``encode(fresh assembler fed source[offset:read_end], then flushed as flush)`` with the
    timestamp ``time_ns``; ``length`` is its encoded size and ``batch_end`` the committed offset after it
    (``read_end`` minus what the assembler still held). ``read_end`` and ``batch_end`` differ whenever the
    batch ends inside a line, which is why both are kept: feeding only up to ``batch_end`` would not
    reproduce pieces cut from a long unterminated line.
    """

    read_end: int
    batch_end: int
    time_ns: int
    flush: FlushMode
    output_size_before: int
    length: int


@dataclasses.dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a source stands: everything before ``offset`` of the file (dev, ino) is in the output.

    ``head_len``/``head_hash`` fingerprint the first bytes of the file, ``mark_hash`` the (up to
    :data:`MARK_BYTES`) bytes just before ``offset``: both must still match for the offset to be trusted.
    ``output_size`` is the output size once everything committed was written (a consistency check).
    """

    source: str
    dev: int
    ino: int
    head_len: int
    head_hash: str
    mark_hash: str
    offset: int
    output: str
    output_dev: int
    output_ino: int
    output_size: int
    format: str
    intent: Intent | None = None

    def to_json(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies every field, 100 µs per save.
        obj = {name: getattr(self, name) for name in _CHECKPOINT_FIELDS}
        intent = self.intent
        obj["intent"] = None if intent is None else {name: getattr(intent, name) for name in _INTENT_FIELDS}
        return obj

    @classmethod
    def from_json(cls, obj: Any) -> Checkpoint:
        """Validate a decoded record; ValueError if any field is missing or of the wrong type."""
        if not isinstance(obj, dict):
            raise ValueError("checkpoint is not an object")
        intent = obj.get("intent")
        fields: dict[str, Any] = {
            f.name: obj.get(f.name) for f in dataclasses.fields(cls) if f.name != "intent"
        }
        for name, value in fields.items():
            expected = str if name in ("source", "head_hash", "mark_hash", "output", "format") else int
            if type(value) is not expected:
                raise ValueError(f"checkpoint field {name!r} is missing or not {expected.__name__}")
        if fields["offset"] < 0 or fields["head_len"] < 0:
            raise ValueError("checkpoint offset is negative")
        return cls(**fields, intent=None if intent is None else _intent_from_json(intent))


_CHECKPOINT_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Checkpoint) if f.name != "intent")
_INTENT_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Intent))


def _intent_from_json(obj: Any) -> Intent:
    if not isinstance(obj, dict):
        raise ValueError("intent is not an object")
    values: dict[str, Any] = {f.name: obj.get(f.name) for f in dataclasses.fields(Intent)}
    for name, value in values.items():
        if name == "flush":
            if value not in _FLUSH_MODES:
                raise ValueError(f"intent flush {value!r} unknown")
        elif type(value) is not int or value < 0:
            raise ValueError(f"intent field {name!r} is missing or not a non-negative int")
    return Intent(**values)


#: How many bytes before the offset ``mark_hash`` covers.
MARK_BYTES: Final = 64


class CheckpointStore(Protocol):
    """Where a tailer keeps its checkpoints. Single-threaded use (one event loop)."""

    def load(self, source: str) -> Checkpoint | None:
        """The newest record of ``source``, None if there is none."""
        ...

    def save(self, checkpoint: Checkpoint) -> None:
        """Record ``checkpoint``; on ``OSError`` the previous record is intact (the tailer retries)."""
        ...

    def forget(self, source: str) -> None:
        """Drop the record of ``source`` (it is gone and fully written)."""
        ...

    def sources(self) -> Iterator[str]:
        """The sources that have a record."""
        ...


class MemoryStore:
    """Checkpoints that live as long as the process: a tailer needs one (rotation, intents) even when
    nothing is to survive a restart."""

    def __init__(self) -> None:
        self._records: dict[str, Checkpoint] = {}

    def load(self, source: str) -> Checkpoint | None:
        return self._records.get(source)

    def save(self, checkpoint: Checkpoint) -> None:
        self._records[checkpoint.source] = checkpoint

    def forget(self, source: str) -> None:
        self._records.pop(source, None)

    def sources(self) -> Iterator[str]:
        yield from list(self._records)
