"""Keeping DATA_DIR within RETENTION_HOURS and MAX_DATA_BYTES: oldest files go first.

A file's age is its modification time: the time its newest lines were collected. Selection is pure
(``select_removals``); ``enforce`` scans the folders, deletes, and removes folders left empty.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from .layout import STATE_DIR, SUFFIX

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CollectedFile:
    path: Path
    size: int
    mtime: float


def select_removals(
    files: list[CollectedFile], now: float, max_age_secs: float, max_bytes: int
) -> list[CollectedFile]:
    """Files older than ``max_age_secs``, then the oldest of the rest until the total fits ``max_bytes``."""
    ordered = sorted(files, key=lambda item: (item.mtime, str(item.path)))
    removals = [item for item in ordered if now - item.mtime > max_age_secs]
    kept = [item for item in ordered if now - item.mtime <= max_age_secs]
    total = sum(item.size for item in kept)
    for item in kept:
        if total <= max_bytes:
            break
        removals.append(item)
        total -= item.size
    return removals


def scan(data_dir: Path) -> list[CollectedFile]:
    found: list[CollectedFile] = []
    for root, dirs, names in os.walk(data_dir):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in names:
            if name.endswith(SUFFIX) and not name.startswith("."):
                path = Path(root, name)
                try:
                    info = path.lstat()
                except FileNotFoundError:
                    continue
                found.append(CollectedFile(path, info.st_size, info.st_mtime))
    return found


def enforce(data_dir: Path, now: float, max_age_secs: float, max_bytes: int) -> tuple[int, int]:
    """Delete what ``select_removals`` picks; returns (files removed, bytes freed)."""
    removals = select_removals(scan(data_dir), now, max_age_secs, max_bytes)
    freed = 0
    for item in removals:
        try:
            item.path.unlink()
        except FileNotFoundError:
            continue
        freed += item.size
        _remove_empty_parents(item.path.parent, data_dir)
    if removals:
        log.info("retention removed old files", extra={"files": len(removals), "bytes": freed})
    return len(removals), freed


def _remove_empty_parents(folder: Path, data_dir: Path) -> None:
    while folder != data_dir and data_dir in folder.parents and folder.name != STATE_DIR:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
