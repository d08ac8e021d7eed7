"""The README's configuration table documents every setting the command accepts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stats_log_collector.cli import COMMANDS
from stats_log_collector.config import spec_of

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    rows = [line for line in README.splitlines() if line.startswith("| ")]
    for command in COMMANDS:
        for group in command.groups:
            for field in dataclasses.fields(group):
                spec = spec_of(field)
                row = next((row for row in rows if f"`{spec.flag}`" in row), None)
                assert row is not None, f"{spec.flag} is not in README.md"
                if not spec.flag_only:
                    assert f"`{spec.env}`" in row


def test_readme_names_the_newcomer_commands() -> None:
    assert "make demo" in README and "make test" in README
