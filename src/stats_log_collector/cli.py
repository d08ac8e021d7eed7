"""The ``stats-log-collector`` command: one subcommand per component, nothing but wiring.

Each subcommand names the settings groups it reads (settings.py) and the function that runs it. That
function is imported only when the subcommand runs, so ``--help`` and configuration errors are instant
and do not depend on the component's libraries. Exit codes: 0 done, 1 failed, 2 bad configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar, cast

from . import __version__, logsetup
from .config import ConfigError, load, shown_default, spec_of
from .settings import (
    ConsoleTailSettings,
    DemoSettings,
    KubeSettings,
    LoggingSettings,
    LogsCollectorSettings,
    MemstatSettings,
    VirtletLogSettings,
)

PROG = "stats-log-collector"
T = TypeVar("T")


class Settings:
    """The loaded settings groups of one subcommand, looked up by group class."""

    def __init__(self, groups: Mapping[type, object]) -> None:
        self._groups = dict(groups)

    def __getitem__(self, group: type[T]) -> T:
        return cast(T, self._groups[group])


Entry = Callable[[Settings], int]


@dataclasses.dataclass(frozen=True)
class Command:
    name: str
    summary: str
    groups: tuple[type, ...]
    entry: str | None  # "module:function"; None while the component is not built yet
    issue: int


COMMANDS = (
    Command(
        "memstat",
        "sample the RSS of every VM, keep it in a CSV and serve it (CSV, metrics, dashboard)",
        (MemstatSettings, KubeSettings, LoggingSettings),
        "stats_log_collector.memstat.command:main",
        4,
    ),
    Command(
        "logs-collector",
        "collect each VM's launcher and handler logs, hour by hour, with no gap and no duplicate",
        (LogsCollectorSettings, KubeSettings, LoggingSettings),
        "stats_log_collector.logs_collector.command:main",
        5,
    ),
    Command(
        "virtlet-log",
        "rewrite raw VM console logs where kubelet reads them, so kubectl logs shows them",
        (VirtletLogSettings, LoggingSettings),
        "stats_log_collector.virtlet_log.command:main",
        3,
    ),
    Command(
        "console-tail",
        "print one console log to stdout as it grows, following rotation (KubeVirt guest-console-log)",
        (ConsoleTailSettings, LoggingSettings),
        "stats_log_collector.virtlet_log.console_tail:main",
        3,
    ),
    Command(
        "demo",
        "boot real QEMU VMs on this machine and watch them with virtlet-log and memstat",
        (DemoSettings, LoggingSettings),
        "stats_log_collector.demo.command:main",
        7,
    ),
)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_group(parser: argparse.ArgumentParser, group: type) -> None:
    title = (group.__doc__ or group.__name__).strip().splitlines()[0].rstrip(".")
    section = parser.add_argument_group(title)
    for field in dataclasses.fields(group):
        spec = spec_of(field)
        source = "flag only" if spec.flag_only else f"env {spec.env}"
        help_text = f"{spec.help} [{source}, default: {shown_default(field)}]"
        if spec.flag_only:
            section.add_argument(
                spec.flag, dest=field.name, action="store_const", const="true", help=help_text
            )
        else:
            section.add_argument(spec.flag, dest=field.name, metavar="VALUE", help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Watch the VMs running on Kubernetes (KubeVirt, Virtlet): their memory, their pods' logs "
        "and their serial consoles.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name,
            help=command.summary,
            description=command.summary + ". Every setting is a flag or an environment variable; "
            "a flag wins over the variable, the variable over the default.",
        )
        sub.set_defaults(_command=command)
        for group in command.groups:
            _add_group(sub, group)
    return parser


def load_settings(command: Command, flags: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
    return Settings({group: load(group, flags, environ) for group in command.groups})


def _entry(command: Command) -> Entry:
    assert command.entry is not None
    module_name, function_name = command.entry.split(":")
    return cast(Entry, getattr(importlib.import_module(module_name), function_name))


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Command = args._command
    try:
        settings = load_settings(command, vars(args), os.environ if environ is None else environ)
    except ConfigError as exc:
        print(f"{PROG} {command.name}: configuration error: {exc}", file=sys.stderr)
        return 2
    logsetup.configure(settings[LoggingSettings])
    if command.entry is None:
        print(
            f"{PROG} {command.name}: not built yet (issue #{command.issue}); nothing was started",
            file=sys.stderr,
        )
        return 1
    return _entry(command)(settings)
