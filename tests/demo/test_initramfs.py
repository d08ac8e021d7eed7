"""The initramfs writer, checked against GNU cpio (the independent reader) and the real busybox-static."""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from stats_log_collector.demo.initramfs import (
    busybox_initramfs,
    char_device,
    content_key,
    directory,
    ensure_initramfs,
    is_static_elf,
    newc_archive,
    regular,
    symlink,
)

CPIO = shutil.which("cpio")
BUSYBOX = shutil.which("busybox")
needs_cpio = pytest.mark.skipif(CPIO is None, reason="GNU cpio is not installed (apt-get install cpio)")

ENTRIES = [
    directory("bin"),
    regular("bin/tool", b"#!/bin/sh\necho hi\n", 0o755),
    symlink("bin/alias", "tool"),
    directory("dev"),
    char_device("dev/console", 5, 1),
    regular("odd-size", b"x" * 4099),  # data padding to 4 bytes
    regular("empty", b""),
]


def cpio(*args: str, data: bytes, cwd: Path | None = None) -> str:
    assert CPIO is not None
    result = subprocess.run([CPIO, *args], input=data, capture_output=True, cwd=cwd, check=True)
    return result.stdout.decode()


@needs_cpio
def test_gnu_cpio_lists_every_member_in_order() -> None:
    listing = cpio("-t", "--quiet", data=newc_archive(ENTRIES)).split()
    assert listing == [entry.name for entry in ENTRIES]


@needs_cpio
def test_gnu_cpio_lists_types_modes_and_the_device_numbers() -> None:
    verbose = cpio("-tv", "--quiet", data=newc_archive(ENTRIES)).splitlines()
    assert verbose[1].startswith("-rwxr-xr-x")
    assert verbose[2].startswith("lrwxrwxrwx") and verbose[2].endswith("bin/alias -> tool")
    assert verbose[4].startswith("crw-------") and " 5,   1 " in verbose[4]


@needs_cpio
def test_gnu_cpio_extracts_the_same_contents(tmp_path: Path) -> None:
    files = [entry for entry in ENTRIES if not stat.S_ISCHR(entry.mode)]
    cpio("-id", "--quiet", "--no-absolute-filenames", data=newc_archive(files), cwd=tmp_path)
    assert (tmp_path / "bin/tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert os.access(tmp_path / "bin/tool", os.X_OK)
    assert os.readlink(tmp_path / "bin/alias") == "tool"
    assert (tmp_path / "odd-size").read_bytes() == b"x" * 4099
    assert (tmp_path / "empty").read_bytes() == b""


def test_archive_is_reproducible_and_aligned() -> None:
    archive = newc_archive(ENTRIES)
    assert archive == newc_archive(ENTRIES)
    assert len(archive) % 4 == 0
    assert archive.startswith(b"070701") and b"TRAILER!!!\0" in archive[-128:]


def test_static_elf_detection() -> None:
    dynamic = Path(os.path.realpath(sys.executable)).read_bytes()
    assert not is_static_elf(dynamic)  # CPython needs ld.so
    assert not is_static_elf(b"#!/bin/sh\n" + b"\0" * 100)
    assert not is_static_elf(b"\x7fELF")


@pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed (apt-get install busybox-static)")
def test_debian_busybox_static_is_static() -> None:
    assert BUSYBOX is not None
    assert is_static_elf(Path(BUSYBOX).read_bytes())


@needs_cpio
def test_busybox_initramfs_holds_init_and_sh() -> None:
    image = busybox_initramfs(b"\x7fELF-not-really", "#!/bin/sh\necho guest\n")
    names = cpio("-t", "--quiet", data=gzip.decompress(image)).split()
    assert {"init", "bin/busybox", "bin/sh", "dev/console", "proc", "sys", "tmp"} <= set(names)
    assert busybox_initramfs(b"\x7fELF-not-really", "#!/bin/sh\necho guest\n") == image  # gzip mtime=0


def test_initramfs_is_cached_per_busybox_and_script(tmp_path: Path) -> None:
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF-binary")
    first = ensure_initramfs(tmp_path / "images", busybox, "#!/bin/sh\necho one\n")
    mtime = first.stat().st_mtime_ns
    assert ensure_initramfs(tmp_path / "images", busybox, "#!/bin/sh\necho one\n") == first
    assert first.stat().st_mtime_ns == mtime  # not rebuilt
    second = ensure_initramfs(tmp_path / "images", busybox, "#!/bin/sh\necho two\n")
    assert second != first and not first.exists()  # a changed script rebuilds; the old build goes
    assert content_key(b"a", "s") != content_key(b"b", "s")
