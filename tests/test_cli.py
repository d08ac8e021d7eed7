"""The installed ``stats-log-collector`` command, run as a real process."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stats_log_collector.cli import COMMANDS
from stats_log_collector.config import shown_default, spec_of


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if key not in _ALL_VARIABLES}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "stats_log_collector", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


_ALL_VARIABLES = {
    name for c in COMMANDS for g in c.groups for f in dataclasses.fields(g) for name in spec_of(f).variables
}


def test_top_level_help_lists_every_subcommand() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for name in ("memstat", "logs-collector", "virtlet-log", "console-tail", "demo"):
        assert name in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command.name)
def test_help_lists_every_setting_with_variable_and_default(command) -> None:
    result = run_cli(command.name, "--help", env={"COLUMNS": "400"})
    assert result.returncode == 0
    entries = help_entries(result.stdout)
    for group in command.groups:
        for field in dataclasses.fields(group):
            spec = spec_of(field)
            entry = entries.get(spec.flag)
            assert entry is not None, f"{spec.flag} missing from {command.name} --help"
            if not spec.flag_only:
                assert f"env {spec.env}" in entry
            assert f"default: {shown_default(field)}" in entry


def help_entries(text: str) -> dict[str, str]:
    """Each option of a --help text with its whole (possibly wrapped) description, by flag."""
    entries: dict[str, str] = {}
    flag = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--"):
            flag = stripped.split()[0]
            entries[flag] = stripped
        elif flag and line.startswith("   ") and stripped:
            entries[flag] += " " + stripped
        else:
            flag = None
    return entries


@pytest.mark.parametrize(
    ("args", "env", "variable"),
    [
        (["memstat"], {"POLL_INTERVAL_SECS": "abc"}, "POLL_INTERVAL_SECS"),
        (["memstat", "--poll-interval-secs", "-1"], {}, "POLL_INTERVAL_SECS"),
        (["memstat", "--http-port", "99999"], {}, "HTTP_PORT"),
        (["memstat"], {"MEMSTAT_SOURCE": "magic"}, "MEMSTAT_SOURCE"),
        (["virtlet-log"], {"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        (["logs-collector"], {"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        (["logs-collector"], {"COLLECT_INTERVAL_SECS": "1.5"}, "COLLECT_INTERVAL_SECS"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(tmp_path: Path, args, env, variable) -> None:
    env = {"DATA_DIR": str(tmp_path / "data"), "STATE_DIR": str(tmp_path / "state"), **env}
    result = run_cli(*args, env=env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert variable in result.stderr
    assert result.stdout == ""


def test_uncreatable_directory_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = run_cli("memstat", env={"DATA_DIR": str(tmp_path / "file" / "data")})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "DATA_DIR: cannot create directory" in result.stderr


def test_unknown_flag_is_one_line_and_exit_2() -> None:
    result = run_cli("memstat", "--no-such-flag")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--no-such-flag" in result.stderr


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("stats-log-collector")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith("stats-log-collector ")
