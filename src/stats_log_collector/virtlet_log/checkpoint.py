"""Per-source checkpoints with a write-ahead intent: what makes virtlet-log exactly-once across ``kill -9``.

A checkpoint says how far a source is represented in its output (``offset``) and which file that offset is
in (device, inode and two fingerprints of the content, so that a reused inode or a truncated and rewritten
file is not mistaken for the old one: vector#1910, copytruncate). Saving it *after* writing the output would
duplicate the last batch when the process dies in between; saving it *before* would lose it (fluent-bit#5912).
So before every batch is appended the checkpoint records an :class:`Intent`: the source range the batch was
made from, the timestamp it was encoded with, how the assembler was flushed and the output size before it.
A batch is a pure function of those, so after a crash it can be rebuilt byte for byte and compared with what
the output actually holds: nothing written, all of it, or a torn prefix whose suffix is then appended.

Storage, and why:

* one small JSON document per source, named by a hash of the source path, in two alternating slots
  (``<key>.a.json`` and ``<key>.b.json``) with a sequence number and a CRC. Each save overwrites the *older*
  slot in place, so the newest good record survives a save that is cut short (a full disk, a crash): that
  slot then fails its CRC and the other one is used. ``kill -9`` cannot cut a save, one ``pwrite`` of at
  most a page, and a save that fails stops its batch before anything is written. A record corrupted some
  other way (vector#20753 found one after an OOM kill) also falls back to the one before: nothing is lost,
  and at most the last batch is written twice (recovery sees the output larger than expected and logs it).
* in place rather than the usual temporary file plus rename: the two slots already make a save atomic, and
  on ext4 a rename over an existing file starts its writeback (``auto_da_alloc``), 160 µs of CPU against 5 µs
  for one ``pwrite`` of a fixed-size record; with two saves per batch, that is what a slow console (one line
  per poll) costs. Records are padded to a multiple of 1 KiB so that a slot is never truncated (truncating
  to zero triggers the same writeback) and the bytes after a shorter record are ignored.
* ``kill -9`` does not lose the page cache, so no ``fsync``: it would cost a disk flush per batch for a
  guarantee the output file itself does not have on power loss either. After a power cut the slots may be
  older than the output (a batch may then appear twice) or missing (the source is read again from the start);
  the CRC keeps a half-written record from being used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "FlushMode",
    "Intent",
    "fingerprint",
]

log = logging.getLogger(__name__)

#: How the assembler was flushed at the end of a batch: not at all, idle (a trailing ``\\r`` and an
#: unfinished UTF-8 character stay held) or final (everything emitted: the source is finished).
FlushMode = Literal["none", "idle", "final"]
_FLUSH_MODES: Final = ("none", "idle", "final")

_VERSION: Final = 1
_SLOTS: Final = ("a", "b")
_BLOCK: Final = 1024  # records are padded to a multiple of this


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


class CheckpointStore:
    """The checkpoints of all sources, in STATE_DIR. Single-threaded use (one event loop)."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir
        # Per key: (sequence number of the newest record, slot it is in).
        self._latest: dict[str, tuple[int, str]] = {}
        self._names: dict[str, tuple[str, str, str]] = {}

    @property
    def directory(self) -> Path:
        return self._dir

    @staticmethod
    def key(source: str) -> str:
        """File name stem for a source path (the path itself may be long or hold any character)."""
        return hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:32]

    def _slot_path(self, key: str, slot: str) -> Path:
        return self._dir / f"{key}.{slot}.json"

    def _slot_names(self, source: str) -> tuple[str, str, str]:
        """The key of ``source`` and its two slot file names, cached: a save is on the hot path."""
        found = self._names.get(source)
        if found is None:
            key = self.key(source)
            found = (key, str(self._slot_path(key, _SLOTS[0])), str(self._slot_path(key, _SLOTS[1])))
            self._names[source] = found
        return found

    def load(self, source: str) -> Checkpoint | None:
        """The newest valid record for ``source``, None if there is none (a corrupt slot is logged)."""
        key = self.key(source)
        best: tuple[int, str, Checkpoint] | None = None
        for slot in _SLOTS:
            found = self._read_slot(self._slot_path(key, slot), source)
            if found is not None and (best is None or found[0] > best[0]):
                best = (found[0], slot, found[1])
        if best is None:
            self._latest.pop(key, None)
            return None
        self._latest[key] = (best[0], best[1])
        return best[2]

    def _read_slot(self, path: Path, source: str | None) -> tuple[int, Checkpoint] | None:
        """The (sequence, record) in one slot file; ``source`` None accepts any source."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("cannot read checkpoint", extra={"path": str(path), "error": str(exc)})
            return None
        try:
            seq, checkpoint = _decode(raw)
        except ValueError as exc:
            log.warning("corrupt checkpoint ignored", extra={"path": str(path), "error": str(exc)})
            return None
        if source is not None and checkpoint.source != source:
            log.warning("checkpoint of another source ignored", extra={"path": str(path)})
            return None
        return seq, checkpoint

    def save(self, checkpoint: Checkpoint) -> None:
        """Overwrite the older slot with ``checkpoint``; on OSError (ENOSPC...) the newest one is intact."""
        key, name_a, name_b = self._slot_names(checkpoint.source)
        if key not in self._latest:
            self.load(checkpoint.source)
        seq, slot = self._latest.get(key, (0, _SLOTS[1]))
        target_slot = _SLOTS[0] if slot == _SLOTS[1] else _SLOTS[1]
        target = name_a if target_slot == _SLOTS[0] else name_b
        data = _encode(seq + 1, checkpoint)
        data += b" " * (-len(data) % _BLOCK)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.pwrite(fd, data, 0) != len(data):  # a short write of a small file: the disk is full
                raise OSError(errno.ENOSPC, "short write of checkpoint", target)
        finally:
            os.close(fd)
        self._latest[key] = (seq + 1, target_slot)

    def forget(self, source: str) -> None:
        """Delete the checkpoint of ``source`` (the source is gone)."""
        key = self.key(source)
        self._latest.pop(key, None)
        self._names.pop(source, None)
        for slot in _SLOTS:
            _unlink_quietly(self._slot_path(key, slot))

    def sources(self) -> Iterator[str]:
        """The source paths that have a checkpoint (to find those whose source is gone for good)."""
        seen: set[str] = set()
        for path in sorted(self._dir.glob("*.json")):
            found = self._read_slot(path, source=None)
            if found is not None and found[1].source not in seen:
                seen.add(found[1].source)
                yield found[1].source


def _encode(seq: int, checkpoint: Checkpoint) -> bytes:
    body = json.dumps(
        {"v": _VERSION, "seq": seq, "checkpoint": checkpoint.to_json()}, separators=(",", ":")
    ).encode("utf-8", "surrogateescape")
    return body + b"\n%08x\n" % zlib.crc32(body)


def _decode(raw: bytes) -> tuple[int, Checkpoint]:
    # The JSON body holds no raw newline: body, CRC, then padding (or the end of an older, longer record).
    body, _, rest = raw.partition(b"\n")
    trailer = rest[:9]
    if len(trailer) != 9 or trailer[8:] != b"\n":
        raise ValueError("no CRC line (truncated?)")
    try:
        crc = int(trailer[:8], 16)
    except ValueError:
        raise ValueError("CRC line is not hexadecimal") from None
    if zlib.crc32(body) != crc:
        raise ValueError("CRC mismatch")
    try:
        obj = json.loads(body.decode("utf-8", "surrogateescape"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict) or obj.get("v") != _VERSION or type(obj.get("seq")) is not int:
        raise ValueError("unknown checkpoint version")
    return obj["seq"], Checkpoint.from_json(obj.get("checkpoint"))


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
