"""The ``stats-log-collector`` command: one subcommand per component, nothing but wiring.

Each subcommand names the settings groups it reads (settings.py) and the component function that runs
with them. Components never import this module: they take their typed settings groups as arguments
(``run(memstat: MemstatSettings, kube: KubeSettings, kubelet: KubeletSettings)``), so they can be
called, and tested, without a command line. Exit codes: 0 done, 1 failed, 2 bad configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, NoReturn, TypeVar

from . import PROG, __version__, logsetup
from .config import ConfigError, load, shown_default, spec_of
from .instance_lock import InstanceLocked
from .settings import (
    ConsoleTailSettings,
    DemoSettings,
    KubeletSettings,
    KubeSettings,
    LoggingSettings,
    LogsCollectorSettings,
    MemstatSettings,
    VirtletLogSettings,
)

T = TypeVar("T")


# What each subcommand is given: its settings groups, one field each. The groups a subcommand shows in
# --help are read from these fields, and the function that runs it is typed against the same class, so
# a group a component needs but the subcommand does not load is a mypy error, not a run-time KeyError.
@dataclasses.dataclass(frozen=True)
class MemstatCommand:
    memstat: MemstatSettings
    kube: KubeSettings
    kubelet: KubeletSettings
    logging: LoggingSettings


@dataclasses.dataclass(frozen=True)
class LogsCollectorCommand:
    logs_collector: LogsCollectorSettings
    kube: KubeSettings
    logging: LoggingSettings


@dataclasses.dataclass(frozen=True)
class VirtletLogCommand:
    virtlet_log: VirtletLogSettings
    logging: LoggingSettings


@dataclasses.dataclass(frozen=True)
class ConsoleTailCommand:
    console_tail: ConsoleTailSettings
    logging: LoggingSettings


@dataclasses.dataclass(frozen=True)
class DemoCommand:
    demo: DemoSettings
    logging: LoggingSettings


# Each component is imported only when its subcommand runs, so --help and configuration errors are
# instant and do not depend on the component's libraries.
def _memstat(settings: MemstatCommand) -> int:
    from .memstat.command import run

    return run(settings.memstat, settings.kube, settings.kubelet)


def _logs_collector(settings: LogsCollectorCommand) -> int:
    from .logs_collector.command import run

    return run(settings.logs_collector, settings.kube)


def _virtlet_log(settings: VirtletLogCommand) -> int:
    from .virtlet_log.command import run

    return run(settings.virtlet_log)


def _console_tail(settings: ConsoleTailCommand) -> int:
    from .console_tail.command import run

    return run(settings.console_tail)


def _demo(settings: DemoCommand) -> int:
    from .demo.command import run

    return run(settings.demo)


@dataclasses.dataclass(frozen=True)
class Command(Generic[T]):
    name: str
    summary: str
    settings: type[T]  # a dataclass of settings groups, one field per group
    run: Callable[[T], int]

    @property
    def groups(self) -> tuple[type, ...]:
        return tuple(_groups_of(self.settings).values())

    def load(self, flags: Mapping[str, Any], environ: Mapping[str, str]) -> T:
        """Every group of this subcommand from flags, variables and defaults (ConfigError if one is bad)."""
        groups: dict[str, object] = {
            name: load(group, flags, environ) for name, group in _groups_of(self.settings).items()
        }
        return self.settings(**groups)


def _groups_of(settings: type) -> dict[str, type]:
    """The settings groups of a command class by field name (its annotations are postponed: resolved)."""
    hints = typing.get_type_hints(settings)
    return {field.name: hints[field.name] for field in dataclasses.fields(settings)}


COMMANDS: tuple[Command[Any], ...] = (
    Command(
        "memstat",
        "sample the RSS of every VM, keep it in a CSV and serve it (CSV, metrics, dashboard)",
        MemstatCommand,
        _memstat,
    ),
    Command(
        "logs-collector",
        "collect each VM's launcher and handler logs, hour by hour, with no gap and no duplicate",
        LogsCollectorCommand,
        _logs_collector,
    ),
    Command(
        "virtlet-log",
        "rewrite raw VM console logs where kubelet reads them, so kubectl logs shows them",
        VirtletLogCommand,
        _virtlet_log,
    ),
    Command(
        "console-tail",
        "print one console log to stdout as it grows, following rotation (KubeVirt guest-console-log)",
        ConsoleTailCommand,
        _console_tail,
    ),
    Command(
        "demo",
        "boot real QEMU VMs on this machine and watch them with virtlet-log and memstat",
        DemoCommand,
        _demo,
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
        help_text = f"{spec.help} [{spec.source}, default: {shown_default(field)}]"
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


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Command[Any] = args._command
    try:
        settings = command.load(vars(args), os.environ if environ is None else environ)
    except ConfigError as exc:
        print(f"{PROG} {command.name}: configuration error: {exc}", file=sys.stderr)
        return 2
    logsetup.configure(settings.logging)
    try:
        return command.run(settings)
    except InstanceLocked as exc:  # a component's state is another instance's: nothing was touched
        print(f"{PROG} {command.name}: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:  # a setting that loads but cannot work (a port in use, not a kubeconfig)
        print(f"{PROG} {command.name}: configuration error: {exc}", file=sys.stderr)
        return 2
