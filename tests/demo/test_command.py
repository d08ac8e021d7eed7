"""``stats-log-collector demo`` before any VM: what a user without root is told, bad settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stats_log_collector.demo.host import advice, install_commands


def test_without_root_the_exact_apt_command_is_given() -> None:
    missing = ["qemu-system-x86", "busybox-static"]
    text = advice(missing, install_commands(missing, update=False))
    assert text.startswith("this host needs qemu-system-x86, busybox-static. As root, run first:")
    assert (
        "    sudo apt-get update -q && sudo apt-get install -y -q --no-install-recommends "
        "qemu-system-x86 busybox-static\n"
    ) in text


def test_without_root_and_without_apt_lists_the_update_is_given() -> None:
    text = advice([], install_commands([], update=True))
    assert "apt's package lists" in text and "sudo apt-get update -q\n" in text


@pytest.mark.parametrize(
    ("variable", "value"), [("DEMO_VMS", "0"), ("DEMO_VM_PREFIX", "Demo_"), ("DEMO_VM_PREFIX", "-vm")]
)
def test_bad_settings_are_configuration_errors(variable: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stats_log_collector", "demo"],
        env={**os.environ, variable: value}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"configuration error: {variable}:" in result.stderr
