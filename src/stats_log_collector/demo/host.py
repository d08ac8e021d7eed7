"""What the demo needs from the host, and the one apt-get command that provides it.

QEMU (``qemu-system-x86``) and a *static* busybox (``busybox-static``: the initramfs has no libc). The
kernel comes from ``linux-image-cloud-amd64`` through ``kernel.py``, which needs apt's package lists.
As root the demo runs the command itself; otherwise it prints it and stops, so nothing is installed
behind a user's back. The initramfs is written in Python, so ``cpio`` is not needed at run time (the
tests check the archive with GNU cpio, and CI installs it).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from .initramfs import is_static_elf
from .qemu import QEMU_BINARY

log = logging.getLogger(__name__)

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
APT_LISTS = Path("/var/lib/apt/lists")


@dataclasses.dataclass(frozen=True)
class HostTools:
    qemu: str | None
    busybox: str | None  # a static busybox; None if absent or dynamically linked


def _static(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as binary:
            return path if is_static_elf(binary.read(1 << 16)) else None
    except OSError:
        return None


def find_tools(which: Callable[[str], str | None] = shutil.which) -> HostTools:
    return HostTools(qemu=which(QEMU_BINARY), busybox=_static(which("busybox")))


def missing_packages(tools: HostTools) -> list[str]:
    missing = []
    if tools.qemu is None:
        missing.append("qemu-system-x86")
    if tools.busybox is None:
        missing.append("busybox-static")
    return missing


def apt_lists_present(lists: Path = APT_LISTS) -> bool:
    """Whether ``apt-get update`` ever ran: a fresh container image ships without package lists."""
    return any(lists.glob("*_Packages*"))


def install_commands(packages: list[str], update: bool) -> list[list[str]]:
    commands = [["apt-get", "update", "-q"]] if update or packages else []
    if packages:
        commands.append(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages])
    return commands


def shell_line(commands: list[list[str]], sudo: bool) -> str:
    prefix = "sudo " if sudo else ""
    return " && ".join(prefix + " ".join(command) for command in commands)


def advice(missing: list[str], commands: list[list[str]]) -> str:
    """What a user without root is told: what is missing, and the exact command to run first."""
    what = ", ".join(missing) if missing else "apt's package lists (for the guest kernel)"
    return f"this host needs {what}. As root, run first:\n\n    {shell_line(commands, sudo=True)}\n"


def is_root() -> bool:
    return os.geteuid() == 0


def install(commands: list[list[str]]) -> None:
    """Run the apt-get commands (as root), their output going to the terminal."""
    for command in commands:
        log.info("installing what the demo needs", extra={"command": " ".join(command)})
        subprocess.run(command, check=True, env={**os.environ, **APT_ENV})
