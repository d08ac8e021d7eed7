"""A kernel to boot the demo guests: Debian's cloud kernel, taken out of its package, cached.

``linux-image-cloud-amd64`` is a small, virtio- and serial-ready kernel. It is not *installed*: that
would pull initramfs-tools, udev and a newer systemd, run update-initramfs and bootloader hooks that fail
or take minutes in a container, all for a host that never boots it. Instead the versioned package it
depends on is downloaded with ``apt-get download`` (no root needed once apt's lists exist) and
``boot/vmlinuz-*`` is read out of it (``dpkg-deb --fsys-tarfile``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
_DEPENDS = re.compile(r"^\s*Depends:\s*(linux-image-\S+)\s*$", re.MULTILINE)
_VMLINUZ = re.compile(r"^(\./)?boot/vmlinuz-[^/]+$")


class KernelUnavailable(Exception):
    """No kernel could be obtained; the message says what to do."""


def versioned_package(apt_cache_depends: str) -> str:
    """The versioned image package named in ``apt-cache depends linux-image-cloud-amd64`` output."""
    match = _DEPENDS.search(apt_cache_depends)
    if match is None:
        raise KernelUnavailable(f"apt-cache does not know {KERNEL_META_PACKAGE}: run apt-get update first")
    return match[1]


def is_vmlinuz_member(name: str) -> bool:
    return _VMLINUZ.match(name) is not None


def extract_vmlinuz(deb: Path, dest: Path) -> str:
    """Write the package's ``boot/vmlinuz-*`` to ``dest`` (atomically); returns the member's name."""
    found: str | None = None
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as dpkg:
        assert dpkg.stdout is not None
        with tarfile.open(fileobj=dpkg.stdout, mode="r|*") as archive:
            for member in archive:
                wanted = member.isfile() and is_vmlinuz_member(member.name)
                source = archive.extractfile(member) if wanted else None
                if source is not None:
                    _write_atomically(dest, source.read())
                    found = member.name
                    break
        dpkg.stdout.read()  # let dpkg-deb finish writing, so its exit code means something
    if dpkg.returncode != 0:
        raise KernelUnavailable(f"dpkg-deb could not read {deb.name} (exit code {dpkg.returncode})")
    if found is None:
        raise KernelUnavailable(f"{deb.name} holds no boot/vmlinuz-*")
    return found


def _write_atomically(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    temporary = dest.with_name(f".{dest.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, dest)


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise KernelUnavailable(
            f"{argv[0]} not found: the kernel is fetched with apt (Debian, Ubuntu)"
        ) from None
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise KernelUnavailable(f"{' '.join(argv)} failed: {detail}")
    return result.stdout


def ensure_kernel(cache_dir: Path) -> Path:
    """``<cache_dir>/vmlinuz``, fetched once: a later call (a second demo run) costs nothing."""
    kernel = cache_dir / "vmlinuz"
    if kernel.is_file():
        return kernel
    package = versioned_package(_run(["apt-cache", "depends", KERNEL_META_PACKAGE]))
    cache_dir.mkdir(parents=True, exist_ok=True)
    log.info("fetching the guest kernel", extra={"package": package, "into": str(cache_dir)})
    download = Path(tempfile.mkdtemp(prefix=".download-", dir=cache_dir))
    try:
        os.chmod(download, 0o755)  # apt-get download as root hands the file to the _apt user
        _run(["apt-get", "download", "-q", package], cwd=download)
        debs = sorted(download.glob("*.deb"))
        if not debs:
            raise KernelUnavailable(f"apt-get download {package} left no .deb")
        member = extract_vmlinuz(debs[0], kernel)
    finally:
        shutil.rmtree(download, ignore_errors=True)
    (cache_dir / "vmlinuz.source").write_text(f"{debs[0].name} {member}\n")
    return kernel
