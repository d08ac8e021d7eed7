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
import enum
import errno
import os
import stat
from pathlib import Path
from typing import Final

__all__ = [
    "HEAD_BYTES",
    "FileId",
    "NotRegularFile",
    "Rotation",
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
    """The path is a symbolic link, directory, FIFO, socket or device: nothing a tailer may follow."""


def open_regular(path: Path | str, flags: int = os.O_RDONLY, mode: int = 0o640) -> tuple[int, os.stat_result]:
    """Open ``path`` and insist on a regular file; return the descriptor and its stat.

    ``O_NOFOLLOW``: a symbolic link is refused (:class:`NotRegularFile`), never followed. The directories
    we read are writable by the VMs' side (virtlet-log runs as root): a console swapped for
    ``ln -s /etc/shadow`` must not be copied into a pod log, at discovery or after a rotation.
    ``O_NONBLOCK`` because opening a FIFO for reading would otherwise wait for a writer and hang the one
    event loop; it changes nothing for a regular file. ``mode`` applies when ``flags`` create the file.
    """
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # what O_NOFOLLOW answers for a symbolic link
            raise NotRegularFile(errno.ELOOP, "a symbolic link, refused", str(path)) from exc
        raise
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularFile(errno.EINVAL, "not a regular file, refused", str(path))
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


class Rotation(enum.Enum):
    """How the rotating writer names the files it renames away: which siblings of a path are candidates."""

    #: logrotate, Virtlet and kubelet: ``<name>.<suffix>`` or ``<name>-<suffix>`` (numbers, dates...).
    ANY = "any"
    #: virtlogd: ``<name>.0``, ``<name>.1``... and nothing else (libvirt ``src/util/virrotatingfile.c``,
    #: ``virRotatingFileWriterRollover``: ``<basepath>.<i>`` for ``i < maxbackup``). Anything else next
    #: to the file (console-tail's own state and lock files, ``<file>.state.a.json``) is no candidate.
    NUMBERED = "numbered"

    def names(self, base: str, name: str) -> bool:
        """Is ``name`` a rotated name of ``base``?"""
        if len(name) <= len(base) + 1 or not name.startswith(base):
            return False
        if self is Rotation.NUMBERED:
            return name[len(base)] == "." and name[len(base) + 1 :].isdigit() and name.isascii()
        if name[len(base)] not in ".-":
            return False
        return not (name.endswith(_COMPRESSED) or name.endswith(".tmp"))


def rotated_siblings(path: Path, rotation: Rotation = Rotation.ANY) -> list[Sibling]:
    """The regular files rotation made of ``path`` (named as ``rotation`` says), oldest first.

    Age is the modification time: a rotated file stops being written when the next one starts. Files touched
    within the same clock tick are ordered by their suffix: a larger ``.N`` is older (logrotate, virtlogd),
    any other suffix (dates, kubelet's ``YYYYMMDD-HHMMSS``) sorts older first as text.
    """
    base = path.name
    found: list[Sibling] = []
    try:
        with os.scandir(path.parent) as entries:
            for entry in entries:
                if not rotation.names(base, entry.name):
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
