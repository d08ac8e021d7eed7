"""The source files a tailer reads: open descriptors with what is known of their content.

A file is followed by descriptor, never by name (rotation renames it while we read), and every read is
checked against the content fingerprints taken so far, so that a file truncated and refilled, or a reused
inode, is noticed (docs/tailing.md, "Which file is which").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from .checkpoint import MARK_BYTES, Checkpoint, fingerprint
from .fileid import HEAD_BYTES, FileId, Rotation, Sibling, open_regular, rotated_siblings
from .observer import Observer
from .plan import Candidate

__all__ = [
    "SourceFile",
    "candidates",
    "close_all",
    "matches_checkpoint",
    "open_path",
    "open_siblings",
]

#: How often the rotated siblings are listed again when names move while they are being opened.
_LIST_ATTEMPTS: Final = 5


class SourceFile:
    """A source file open for reading, with the content fingerprints that tell if it is still the same."""

    __slots__ = ("_head_hash", "fd", "final", "head", "ident", "name", "pos", "tail")

    def __init__(self, fd: int, ident: FileId, name: str, *, pos: int = 0, final: bool = False) -> None:
        self.fd = fd
        self.ident = ident
        self.name = name
        #: No more data will be appended (a rotated file): at its end, flush everything and go to the next.
        self.final = final
        self.head = os.pread(fd, HEAD_BYTES, 0)
        self._head_hash: str | None = None
        self.pos = pos
        self.tail = b""
        self.seek(pos)

    def seek(self, pos: int) -> None:
        """Read from ``pos`` on."""
        os.lseek(self.fd, pos, os.SEEK_SET)
        self.pos = pos
        start = max(0, pos - MARK_BYTES)
        self.tail = os.pread(self.fd, pos - start, start) if pos else b""

    def advance(self, chunk: bytes) -> None:
        """Account for ``chunk``, read at ``pos`` and found :meth:`consistent`."""
        if len(self.head) < HEAD_BYTES and self.pos <= len(self.head) < self.pos + len(chunk):
            # The head grows from checked reads only: a fresh pread could already see a rewritten file.
            self.head = (self.head + chunk[len(self.head) - self.pos :])[:HEAD_BYTES]
            self._head_hash = None
        self.pos += len(chunk)
        self.tail = chunk[-MARK_BYTES:] if len(chunk) >= MARK_BYTES else (self.tail + chunk)[-MARK_BYTES:]

    def recapture_head(self) -> None:
        """Take the head again (only before anything is read)."""
        self.head = os.pread(self.fd, HEAD_BYTES, 0)
        self._head_hash = None

    @property
    def head_hash(self) -> str:
        if self._head_hash is None:
            self._head_hash = fingerprint(self.head)
        return self._head_hash

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def consistent(self, chunk: bytes) -> bool:
        """Was ``chunk``, just read at ``pos``, read from the content we know? The bytes before ``pos`` must
        be unchanged, and where the chunk overlaps the head captured at open, it must agree with it (a file
        that waited in the queue may have been truncated and refilled before its first read)."""
        if self.tail and os.pread(self.fd, len(self.tail), self.pos - len(self.tail)) != self.tail:
            return False
        known = self.head[self.pos : self.pos + len(chunk)]
        return chunk.startswith(known)

    def rewritten(self, size: int) -> bool:
        """True if the file shrank below what we read, or the bytes at its start or before ``pos`` changed."""
        if size < self.pos:
            return True
        if self.head and os.pread(self.fd, len(self.head), 0) != self.head:
            return True
        return bool(self.tail) and os.pread(self.fd, len(self.tail), self.pos - len(self.tail)) != self.tail


def open_path(source: Path, beneath: Path | None = None) -> SourceFile | None:
    """The file at ``source``, None if there is none; other ``OSError`` are raised. ``beneath``: see
    :func:`~.fileid.open_regular`."""
    try:
        fd, st = open_regular(source, beneath=beneath)
    except FileNotFoundError:
        return None
    return SourceFile(fd, FileId.of(st), str(source))


def open_siblings(
    source: Path,
    exclude: FileId | None,
    observer: Observer,
    rotation: Rotation = Rotation.ANY,
    beneath: Path | None = None,
) -> list[SourceFile]:
    """The rotated siblings of ``source`` (named as ``rotation`` says, but ``exclude``), oldest first, all
    opened at once.

    Rotation renames them while we look (``x.log.1`` becomes ``x.log.2``): a name that no longer holds the
    file listed makes us list again, so that none is missed or taken for another; after that only the open
    descriptors are used.
    """
    opened: list[SourceFile] = []
    listed: list[Sibling] = []
    for attempt in range(_LIST_ATTEMPTS):
        listed = [s for s in rotated_siblings(source, rotation, beneath) if s.ident != exclude]
        opened = [f for f in (_open_sibling(s, beneath) for s in listed) if f is not None]
        if len(opened) == len(listed) or attempt == _LIST_ATTEMPTS - 1:
            break
        close_all(opened)
    if len(opened) != len(listed):
        observer.siblings_kept_moving(str(source))
    return opened


def _open_sibling(sibling: Sibling, beneath: Path | None) -> SourceFile | None:
    """A rotated sibling, opened if it is still the file that was listed."""
    try:
        fd, st = open_regular(sibling.path, beneath=beneath)
    except OSError:  # gone, or swapped for a symbolic link or FIFO since it was listed: never followed
        return None
    if FileId.of(st) != sibling.ident:
        os.close(fd)
        return None
    return SourceFile(fd, sibling.ident, str(sibling.path), final=True)


def close_all(files: Iterable[SourceFile]) -> None:
    for f in files:
        os.close(f.fd)


def candidates(files: Iterable[SourceFile], matches: Callable[[int], bool]) -> list[Candidate]:
    """What the recovery plan needs to know of ``files``: identity, size, and whether ``matches``."""
    return [Candidate(f.ident, f.size(), matches(f.fd)) for f in files]


def matches_checkpoint(fd: int, ck: Checkpoint) -> bool:
    """Does the file hold what the checkpoint saw: its size, its head, the bytes before the offset?"""
    if os.fstat(fd).st_size < ck.offset:
        return False
    if fingerprint(os.pread(fd, ck.head_len, 0)) != ck.head_hash:
        return False
    start = max(0, ck.offset - MARK_BYTES)
    return fingerprint(os.pread(fd, ck.offset - start, start)) == ck.mark_hash
