"""Finding the cloud kernel in apt's answer and reading it out of a real .deb (built with dpkg-deb)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stats_log_collector.demo.kernel import (
    KernelUnavailable,
    ensure_kernel,
    extract_vmlinuz,
    is_vmlinuz_member,
    versioned_package,
)

DEPENDS = """linux-image-cloud-amd64
  Depends: linux-image-6.1.0-56-cloud-amd64
"""


def test_versioned_package_from_apt_cache_depends() -> None:
    assert versioned_package(DEPENDS) == "linux-image-6.1.0-56-cloud-amd64"
    with pytest.raises(KernelUnavailable, match="apt-get update"):
        versioned_package("")


def test_vmlinuz_members() -> None:
    assert is_vmlinuz_member("./boot/vmlinuz-6.1.0-56-cloud-amd64")
    assert not is_vmlinuz_member("./boot/System.map-6.1.0-56-cloud-amd64")
    assert not is_vmlinuz_member("./usr/share/doc/boot/vmlinuz-x")


def build_deb(tmp_path: Path, files: dict[str, bytes]) -> Path:
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: test-kernel\nVersion: 1.0\nArchitecture: amd64\nMaintainer: t <t@example.org>\n"
        "Description: test\n"
    )
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    deb = tmp_path / "test.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
                   check=True, capture_output=True)  # fmt: skip
    return deb


needs_dpkg = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed (not Debian)"
)


@needs_dpkg
def test_vmlinuz_is_extracted_from_a_real_package(tmp_path: Path) -> None:
    image = bytes(range(256)) * 1000
    deb = build_deb(tmp_path, {"boot/config-1.2.3": b"CONFIG_X=y\n", "boot/vmlinuz-1.2.3": image})
    member = extract_vmlinuz(deb, tmp_path / "cache" / "vmlinuz")
    assert member == "./boot/vmlinuz-1.2.3"
    assert (tmp_path / "cache" / "vmlinuz").read_bytes() == image


@needs_dpkg
def test_package_without_kernel_is_refused(tmp_path: Path) -> None:
    deb = build_deb(tmp_path, {"usr/share/doc/x": b"nothing"})
    with pytest.raises(KernelUnavailable, match="no boot/vmlinuz"):
        extract_vmlinuz(deb, tmp_path / "vmlinuz")
    assert not (tmp_path / "vmlinuz").exists()


def test_cached_kernel_is_used_as_is(tmp_path: Path) -> None:
    (tmp_path / "vmlinuz").write_bytes(b"cached")
    assert ensure_kernel(tmp_path).read_bytes() == b"cached"
