"""Which Debian packages the demo needs, and the command that installs them."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from stats_log_collector.demo.host import (
    HostTools,
    apt_lists_present,
    find_tools,
    install_commands,
    missing_packages,
    shell_line,
)


def test_missing_packages() -> None:
    assert missing_packages(HostTools(None, None)) == ["qemu-system-x86", "busybox-static"]
    assert missing_packages(HostTools("/usr/bin/qemu-system-x86_64", "/bin/busybox")) == []


def test_install_commands() -> None:
    assert install_commands([], update=False) == []
    assert install_commands([], update=True) == [["apt-get", "update", "-q"]]
    commands = install_commands(["qemu-system-x86"], update=False)
    assert commands[1] == ["apt-get", "install", "-y", "-q", "--no-install-recommends", "qemu-system-x86"]
    assert shell_line(commands, sudo=True) == (
        "sudo apt-get update -q && sudo apt-get install -y -q --no-install-recommends qemu-system-x86"
    )


def test_a_dynamic_busybox_does_not_count() -> None:
    dynamic = os.path.realpath(sys.executable)
    tools = find_tools(lambda name: dynamic)
    assert tools.busybox is None and tools.qemu == dynamic


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
def test_busybox_static_is_found() -> None:
    assert find_tools().busybox == shutil.which("busybox")


def test_apt_lists(tmp_path: Path) -> None:
    assert not apt_lists_present(tmp_path)
    (tmp_path / "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4").touch()
    assert apt_lists_present(tmp_path)
