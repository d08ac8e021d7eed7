"""Which file is which: identity of a followed file and the places rotation moves it to.

A path is not an identity: rotation renames the file we were reading (``x.log`` becomes ``x.log.1``,
``x.log-20261123`` or, for kubelet's own outputs, ``x.log.20261123-100000``) and creates a new one under the
old name; copy-truncate keeps the inode but replaces the content; a deleted file's inode number is soon given
to another file (vector#1910). So a followed file is known by its (device, inode) *and* by fingerprints of
its content (its first bytes, and the bytes just before the offset reached), and after a restart it is
looked for among the rotated siblings of its path, whose age order then tells which ones came later and
still have to be read (loki#14462) and which ones were finished before (fluent-bit#1330).
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import Final

__all__ = [
    "HEAD_BYTES",
    "FileId",
    "NotRegularFile",
    "Sibling",
    "open_regular",
    "read_at",
    "rotated_siblings",
]

#: How much of the start of a file identifies its content.
HEAD_BYTES: Final = 1024

# Rotated files that were compressed cannot be read (or appended to) as they are.
_COMPRESSED: Final = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip", ".Z")


@dataclasses.dataclass(frozen=True, slots=True)
class FileId:
    """A file as the kernel knows it, whatever its name."""

    dev: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileId:
        return cls(st.st_dev, st.st_ino)


class NotRegularFile(OSError):
    """The path is a directory, FIFO, socket or device: nothing a tailer can follow."""


def open_regular(path: Path | str, flags: int = os.O_RDONLY, mode: int = 0o640) -> tuple[int, os.stat_result]:
    """Open ``path`` and insist on a regular file; return the descriptor and its stat.

    ``O_NONBLOCK`` because opening a FIFO for reading would otherwise wait for a writer and hang the one
    event loop; it changes nothing for a regular file. Symlinks are followed (a loop raises ELOOP). ``mode``
    applies when ``flags`` create the file.
    """
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularFile(f"not a regular file: {path}")
    return fd, st


def read_at(fd: int, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes at ``offset`` (fewer only at the end of the file)."""
    parts: list[bytes] = []
    while size > 0:
        chunk = os.pread(fd, min(size, 1 << 24), offset)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)


@dataclasses.dataclass(frozen=True, slots=True)
class Sibling:
    """A rotated sibling of a path, as listed: name, identity, modification time and size."""

    path: Path
    ident: FileId
    mtime_ns: int
    size: int


def rotated_siblings(path: Path) -> list[Sibling]:
    """The regular files rotation made of ``path`` (``<name>.*``, ``<name>-*``, not compressed), oldest first.

    Age is the modification time: a rotated file stops being written when the next one starts. Files touched
    within the same clock tick are ordered by their suffix: a larger ``.N`` is older (logrotate, virtlogd),
    any other suffix (dates, kubelet's ``YYYYMMDD-HHMMSS``) sorts older first as text.
    """
    base = path.name
    found: list[Sibling] = []
    try:
        with os.scandir(path.parent) as entries:
            for entry in entries:
                name = entry.name
                if len(name) <= len(base) + 1 or not name.startswith(base) or name[len(base)] not in ".-":
                    continue
                if name.endswith(_COMPRESSED) or name.endswith(".tmp"):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.append(Sibling(Path(entry.path), FileId.of(st), st.st_mtime_ns, st.st_size))
    except OSError:
        return []
    found.sort(key=lambda s: _age_key(s, len(base)))
    return found


def _age_key(sibling: Sibling, base_len: int) -> tuple[int, int, str]:
    suffix = sibling.path.name[base_len + 1 :]
    rank = -int(suffix) if suffix.isdigit() else 0
    return sibling.mtime_ns, rank, suffix
