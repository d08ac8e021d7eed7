"""The slot-file checkpoint store: one small record per source, in two alternating CRC'd slots.

Each save overwrites the older slot in place with one ``pwrite``, so the newest good record survives a save
that is cut short or a slot damaged some other way (vector#20753); why in place, why no ``fsync``, and what
a power cut does: docs/tailing.md.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from .checkpoint import Checkpoint
from .observer import Observer

__all__ = ["SlotFileStore"]

_VERSION: Final = 1
_SLOTS: Final = ("a", "b")
_BLOCK: Final = 1024  # records are padded to a multiple of this: a slot is never truncated


class SlotFileStore:
    """The checkpoints of sources in a directory, two slot files each (``<key>.a.json``, ``<key>.b.json``).

    ``name``: a store for one source whose slots are named ``<name>.a.json`` and ``<name>.b.json``, rather
    than after a hash of the source path (console-tail's STATE_FILE).
    """

    def __init__(self, state_dir: Path, *, name: str | None = None, observer: Observer | None = None) -> None:
        self._dir = state_dir
        self._name = name
        self._observer: Observer = observer or Observer()
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

    def _key_of(self, source: str) -> str:
        return self._name or self.key(source)

    def _slot_path(self, key: str, slot: str) -> Path:
        return self._dir / f"{key}.{slot}.json"

    def _slot_names(self, source: str) -> tuple[str, str, str]:
        """The key of ``source`` and its two slot file names, cached: a save is on the hot path."""
        found = self._names.get(source)
        if found is None:
            key = self._key_of(source)
            found = (key, str(self._slot_path(key, _SLOTS[0])), str(self._slot_path(key, _SLOTS[1])))
            self._names[source] = found
        return found

    def load(self, source: str) -> Checkpoint | None:
        """The newest valid record for ``source``, None if there is none (a corrupt slot is reported)."""
        key = self._key_of(source)
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
            self._observer.checkpoint_unreadable(path, str(exc))
            return None
        try:
            seq, checkpoint = _decode(raw)
        except ValueError as exc:
            self._observer.checkpoint_corrupt(path, str(exc))
            return None
        if source is not None and checkpoint.source != source:
            self._observer.checkpoint_foreign(path)
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
        key = self._key_of(source)
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
