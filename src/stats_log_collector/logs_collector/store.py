"""Cursors and the renames that publish files, journalled: a crash neither loses nor repeats a window.

One fsynced journal record moves a window's cursors and names its renames before they are done; a
restart replays it (idempotently) and deletes orphan temporary files. The crash cases, one by one:
docs/logs-collector.md, "The journal and crash safety".
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .cursor import Cursor
from .layout import STATE_DIR, is_temp

log = logging.getLogger(__name__)

SNAPSHOT = "cursors.json"
JOURNAL = "cursors.journal"


class CursorStore:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.directory = data_dir / STATE_DIR
        self._cursors: dict[str, Cursor] = {}
        self._seen: dict[str, float] = {}
        self._journal: Any = None
        self._renamed_in: set[Path] = set()  # folders to fsync before the journal may be dropped

    # ---- start-up -------------------------------------------------------------------------------

    def open(self) -> None:
        """Load the snapshot, replay the journal (finishing its renames), delete orphan temp files."""
        self.directory.mkdir(parents=True, exist_ok=True)
        snapshot = self.directory / SNAPSHOT
        if snapshot.exists():
            data = json.loads(snapshot.read_text())
            for key, entry in data.get("cursors", {}).items():
                self._cursors[key] = Cursor.from_json(entry)
                self._seen[key] = float(entry.get("seen", 0))
        replayed = self._replay()
        removed = self._remove_orphans()
        if replayed or removed:
            log.info("recovered after an interrupted run", extra={"records": replayed, "orphans": removed})
        self._journal = open(self.directory / JOURNAL, "ab")  # noqa: SIM115 (kept open across runs)

    def _replay(self) -> int:
        path = self.directory / JOURNAL
        if not path.exists():
            return 0
        records = 0
        for raw in path.read_bytes().split(b"\n"):
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # a torn record: never acted on
            if not isinstance(record, dict):
                continue
            for tmp, final in record.get("renames", []):
                source = self.data_dir / tmp
                if source.exists():
                    os.replace(source, self.data_dir / final)
            self._apply(record.get("cursors", {}))
            records += 1
        return records

    def _remove_orphans(self) -> int:
        removed = 0
        for root, dirs, names in os.walk(self.data_dir):
            dirs[:] = [name for name in dirs if name != STATE_DIR]
            for name in names:
                if is_temp(name):
                    Path(root, name).unlink(missing_ok=True)
                    removed += 1
        return removed

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    # ---- cursors --------------------------------------------------------------------------------

    def get(self, key: str) -> Cursor | None:
        return self._cursors.get(key)

    def items(self) -> Iterable[tuple[str, Cursor]]:
        return self._cursors.items()

    @property
    def cursors(self) -> Mapping[str, Cursor]:
        """The cursors of the moment, read-only and live (not a copy)."""
        return MappingProxyType(self._cursors)

    def forget(self, keys: Iterable[str]) -> None:
        """Drop the cursors of streams that no longer exist (a pod deleted). Not journalled: after a
        crash they come back from the snapshot, harmlessly, and are pruned with the unseen ones."""
        for key in keys:
            self._cursors.pop(key, None)
            self._seen.pop(key, None)

    def commit(self, cursors: Mapping[str, Cursor], renames: Iterable[tuple[Path, Path]] = ()) -> None:
        """Make the files of a window visible and move its cursors, atomically (see the docstring)."""
        pairs = [
            (str(tmp.relative_to(self.data_dir)), str(final.relative_to(self.data_dir)))
            for tmp, final in renames
        ]
        changed = {key: cursor for key, cursor in cursors.items() if self._cursors.get(key) != cursor}
        if not pairs and not changed:
            return
        encoded = {key: cursor.to_json() for key, cursor in changed.items()}
        record = {"renames": pairs, "cursors": encoded}
        assert self._journal is not None, "open() the store first"
        self._journal.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        for tmp, final in pairs:
            os.replace(self.data_dir / tmp, self.data_dir / final)
            self._renamed_in.add((self.data_dir / final).parent)
        self._apply(encoded)

    def _apply(self, cursors: Mapping[str, Any]) -> None:
        for key, entry in cursors.items():
            self._cursors[key] = Cursor.from_json(entry)
            self._seen[key] = max(self._seen.get(key, 0.0), time.time())

    def snapshot(self, seen: Iterable[str], now: float, forget_after_secs: float) -> None:
        """Fold the journal into the snapshot; mark ``seen`` keys, prune those unseen for too long."""
        for key in seen:
            self._seen[key] = now
        for key in [key for key, at in self._seen.items() if now - at > forget_after_secs]:
            self._seen.pop(key, None)
            self._cursors.pop(key, None)
        data = {
            "cursors": {
                key: {**cursor.to_json(), "seen": round(self._seen.get(key, now), 3)}
                for key, cursor in sorted(self._cursors.items())
            }
        }
        target = self.directory / SNAPSHOT
        temporary = self.directory / (SNAPSHOT + ".tmp")
        with open(temporary, "wb") as handle:
            handle.write(json.dumps(data, separators=(",", ":")).encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        for folder in [*self._renamed_in, self.directory]:
            _fsync_dir(folder)  # the renames are durable: the journal is no longer needed to redo them
        self._renamed_in.clear()
        if self._journal is not None:
            self._journal.truncate(0)
            self._journal.flush()
            os.fsync(self._journal.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:  # removed by retention since: nothing to make durable
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
