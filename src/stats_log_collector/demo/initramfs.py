"""A bootable busybox initramfs, written in Python: the cpio "newc" format the kernel unpacks.

The kernel accepts a gzip-compressed newc archive as initrd. Writing it here (about 40 lines) instead of
calling ``cpio`` means no file tree to stage, device nodes without root (``/dev/console`` is a header,
not a mknod) and a byte-for-byte reproducible result, which is what the cache keys on. The format is
checked against GNU cpio in the tests.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

NEWC_MAGIC = b"070701"
TRAILER = "TRAILER!!!"
_ELF_MAGIC = b"\x7fELF"
_PT_INTERP = 3


@dataclasses.dataclass(frozen=True)
class Entry:
    """One archive member: ``mode`` carries the type bits (S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR)."""

    name: str
    mode: int
    data: bytes = b""  # a file's contents, or a symlink's target
    rdev: tuple[int, int] = (0, 0)  # a device node's (major, minor)


def directory(name: str) -> Entry:
    return Entry(name, stat.S_IFDIR | 0o755)


def regular(name: str, data: bytes, mode: int = 0o644) -> Entry:
    return Entry(name, stat.S_IFREG | mode, data)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, stat.S_IFLNK | 0o777, target.encode())


def char_device(name: str, major: int, minor: int) -> Entry:
    return Entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _member(ino: int, entry: Entry) -> bytes:
    name = entry.name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (ino, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0, *entry.rdev, len(name), 0)
    header = NEWC_MAGIC + b"".join(b"%08X" % value for value in fields)
    return header + name + _pad(len(header) + len(name)) + entry.data + _pad(len(entry.data))


def newc_archive(entries: Iterable[Entry]) -> bytes:
    """The uncompressed archive: members in the given order (parents first), then the trailer.

    Owners are root and times 0, so the same entries always give the same bytes.
    """
    parts = [_member(ino, entry) for ino, entry in enumerate(entries, start=1)]
    parts.append(_member(0, Entry(TRAILER, 0)))
    return b"".join(parts)


def is_static_elf(data: bytes) -> bool:
    """Whether an ELF64 little-endian executable needs no dynamic loader (no PT_INTERP segment).

    The initramfs has no libc, so only a static busybox (Debian's busybox-static) can run in it.
    """
    if len(data) < 64 or data[:4] != _ELF_MAGIC or data[4] != 2 or data[5] != 1:
        return False
    phoff = int.from_bytes(data[32:40], "little")
    phentsize = int.from_bytes(data[54:56], "little")
    phnum = int.from_bytes(data[56:58], "little")
    for index in range(phnum):
        offset = phoff + index * phentsize
        if offset + 4 > len(data):
            return False
        if int.from_bytes(data[offset : offset + 4], "little") == _PT_INTERP:
            return False
    return True


def busybox_entries(busybox: bytes, init_script: str) -> list[Entry]:
    """The tree of a busybox guest: ``/init`` runs under ``/bin/sh``; the script installs the applets."""
    return [
        directory("bin"),
        regular("bin/busybox", busybox, 0o755),
        symlink("bin/sh", "busybox"),
        directory("dev"),
        char_device("dev/console", 5, 1),
        directory("proc"),
        directory("sys"),
        directory("tmp"),
        regular("init", init_script.encode(), 0o755),
    ]


def busybox_initramfs(busybox: bytes, init_script: str) -> bytes:
    """The gzip-compressed initrd (``mtime=0``: reproducible)."""
    return gzip.compress(newc_archive(busybox_entries(busybox, init_script)), compresslevel=6, mtime=0)


def content_key(busybox: bytes, init_script: str) -> str:
    """A short hash naming the initrd built from these inputs, so a changed script or busybox rebuilds it."""
    digest = hashlib.sha256(busybox)
    digest.update(init_script.encode())
    return digest.hexdigest()[:16]


def ensure_initramfs(cache_dir: Path, busybox_path: Path, init_script: str) -> Path:
    """``<cache_dir>/initramfs-<key>.gz``, built once per busybox and script; older builds removed."""
    busybox = busybox_path.read_bytes()
    path = cache_dir / f"initramfs-{content_key(busybox, init_script)}.gz"
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(busybox_initramfs(busybox, init_script))
    os.replace(temporary, path)
    for old in cache_dir.glob("initramfs-*.gz"):
        if old != path:
            old.unlink(missing_ok=True)
    return path
