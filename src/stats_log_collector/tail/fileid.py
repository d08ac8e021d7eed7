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
    "directory_beneath",
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


def open_regular(
    path: Path | str, flags: int = os.O_RDONLY, mode: int = 0o640, *, beneath: Path | None = None
) -> tuple[int, os.stat_result]:
    """Open ``path`` and insist on a regular file; return the descriptor and its stat.

    ``O_NOFOLLOW``: a symbolic link is refused (:class:`NotRegularFile`), never followed. The directories
    we read are writable by the VMs' side (virtlet-log runs as root): a console swapped for
    ``ln -s /etc/shadow`` must not be copied into a pod log, at discovery or after a rotation. With
    ``beneath`` (a directory above ``path``), no directory between the two may be a link either: a
    sandbox folder swapped for ``ln -s /etc`` is refused too (see :func:`directory_beneath`).
    ``O_NONBLOCK`` because opening a FIFO for reading would otherwise wait for a writer and hang the one
    event loop; it changes nothing for a regular file. ``mode`` applies when ``flags`` create the file.
    """
    path = Path(path)
    dir_fd = directory_beneath(beneath, path.parent) if beneath is not None else None
    try:
        fd = os.open(
            path.name if dir_fd is not None else path,
            flags | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW,
            mode,
            dir_fd=dir_fd,
        )
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # what O_NOFOLLOW answers for a symbolic link
            raise NotRegularFile(errno.ELOOP, "a symbolic link, refused", str(path)) from exc
        raise
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularFile(errno.EINVAL, "not a regular file, refused", str(path))
    return fd, st


def directory_beneath(root: Path, directory: Path) -> int:
    """A descriptor of ``directory``, reached from ``root`` one component at a time, never through a link.

    ``O_NOFOLLOW`` guards only the last component of a path; the kernel's ``openat2(RESOLVE_NO_SYMLINKS)``
    guards them all but Python does not wrap it, so each folder below ``root`` is opened relative to the
    previous one with ``O_NOFOLLOW | O_DIRECTORY``. ``root`` itself is the operator's setting and may be a
    link. A link, a non-folder, ``..`` or a ``directory`` outside ``root``: :class:`NotRegularFile`.
    """
    try:
        parts = directory.relative_to(root).parts
    except ValueError:
        raise NotRegularFile(errno.EXDEV, f"not below {root}, refused", str(directory)) from None
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            if part in (".", ".."):
                raise NotRegularFile(errno.EINVAL, "a path through '..', refused", str(directory))
            try:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a link (or a file) where a folder was
                    raise NotRegularFile(
                        exc.errno, "a symbolic link in the path, refused", str(directory)
                    ) from exc
                raise
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


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


def rotated_siblings(
    path: Path, rotation: Rotation = Rotation.ANY, beneath: Path | None = None
) -> list[Sibling]:
    """The regular files rotation made of ``path`` (named as ``rotation`` says), oldest first; with
    ``beneath``, listed only if no folder between it and ``path`` is a link (:func:`directory_beneath`).

    Age is the modification time: a rotated file stops being written when the next one starts. Files touched
    within the same clock tick are ordered by their suffix: a larger ``.N`` is older (logrotate, virtlogd),
    any other suffix (dates, kubelet's ``YYYYMMDD-HHMMSS``) sorts older first as text.
    """
    base = path.name
    found: list[Sibling] = []
    try:
        dir_fd = directory_beneath(beneath, path.parent) if beneath is not None else None
    except OSError:
        return []
    try:
        with os.scandir(path.parent if dir_fd is None else dir_fd) as entries:
            for entry in entries:
                if not rotation.names(base, entry.name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.append(Sibling(path.parent / entry.name, FileId.of(st), st.st_mtime_ns, st.st_size))
    except OSError:
        return []
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    found.sort(key=lambda s: _age_key(s, len(base)))
    return found


def _age_key(sibling: Sibling, base_len: int) -> tuple[int, int, str]:
    suffix = sibling.path.name[base_len + 1 :]
    rank = -int(suffix) if suffix.isdigit() else 0
    return sibling.mtime_ns, rank, suffix
