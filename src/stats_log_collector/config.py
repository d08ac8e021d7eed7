"""How a setting is declared, parsed and resolved: flag > environment variable > default.

Every setting is a dataclass field carrying its environment variable, a parser and a help text in the
field's metadata (see ``setting()``). The CLI turns each field into a ``--kebab-case`` flag and ``load()``
resolves the value. Flags are taken as plain strings and go through the same parser as the variable, so
a bad value gives the same one-line error whichever way it came in, naming the variable.

A setting may also answer to older names of its variable (``aliases``, e.g. the name the tool it
replaces read): any one of them may be set; two set to different values is a configuration error.

Parsers are plain functions ``str -> value`` that raise ``ValueError`` with a short reason; they are
pure so they can be tested directly.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
Parser = Callable[[str], Any]


class ConfigError(Exception):
    """A setting has a bad value: printed as one line, the process exits with code 2."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class Derived:
    """A default computed from other settings of the same group, e.g. ``$DATA_DIR/logs``."""

    compute: Callable[[Mapping[str, Any]], Any]
    shown: str


@dataclasses.dataclass(frozen=True)
class SettingSpec:
    env: str
    parse: Parser
    help: str
    flag_only: bool = False  # e.g. --once: a switch, not a variable
    ensure_dir: bool = False  # create it at load time; failure is a ConfigError
    flag_name: str | None = None  # when the flag is not the variable in kebab-case
    aliases: tuple[str, ...] = ()  # other names of the variable, e.g. the name the original tool read

    @property
    def flag(self) -> str:
        return self.flag_name or "--" + self.env.lower().replace("_", "-")

    @property
    def variables(self) -> tuple[str, ...]:
        """The variable and its aliases, the variable first."""
        return (self.env, *self.aliases)

    @property
    def source(self) -> str:
        """Where the value comes from, as --help shows it: ``env A or B`` or ``flag only``."""
        return "flag only" if self.flag_only else "env " + " or ".join(self.variables)


def setting(
    env: str,
    default: Any,
    help: str,
    parse: Parser = str,
    *,
    flag_only: bool = False,
    ensure_dir: bool = False,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
) -> Any:
    """Declare a dataclass field as a setting (returns a ``dataclasses.field``)."""
    spec = SettingSpec(
        env, parse, help, flag_only=flag_only, ensure_dir=ensure_dir, flag_name=flag, aliases=aliases
    )
    return dataclasses.field(default=default, metadata={"setting": spec})


def spec_of(field: dataclasses.Field[Any]) -> SettingSpec:
    spec = field.metadata.get("setting")
    if not isinstance(spec, SettingSpec):
        raise TypeError(f"field {field.name} is not declared with setting()")
    return spec


def shown_default(field: dataclasses.Field[Any]) -> str:
    """The default as --help shows it."""
    default = field.default
    if isinstance(default, Derived):
        return default.shown
    if default is None or default == "":
        return "unset"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, tuple):
        return ",".join(str(item) for item in default)
    return str(default)


def load(group: type[T], flags: Mapping[str, str | None], environ: Mapping[str, str]) -> T:
    """Resolve every setting of ``group``; ``flags`` maps field names to raw flag values (None: not given)."""
    values: dict[str, Any] = {}
    derived: list[tuple[dataclasses.Field[Any], Derived]] = []
    for field in dataclasses.fields(group):  # type: ignore[arg-type]
        spec = spec_of(field)
        raw = flags.get(field.name)
        if raw is not None:
            values[field.name] = _parse(spec, spec.env, raw)
            continue
        given = {} if spec.flag_only else _from_environment(spec, environ)
        if not given:
            if isinstance(field.default, Derived):
                derived.append((field, field.default))
                continue
            values[field.name] = field.default
            continue
        values[field.name] = next(iter(given.values()))
    for field, rule in derived:
        values[field.name] = rule.compute(values)
    for field in dataclasses.fields(group):  # type: ignore[arg-type]
        spec = spec_of(field)
        if spec.ensure_dir and values[field.name] is not None:
            make_directory(spec.env, values[field.name])
    return group(**values)


def _parse(spec: SettingSpec, variable: str, raw: str) -> Any:
    try:
        return spec.parse(raw.strip())
    except ValueError as exc:
        raise ConfigError(variable, f"{exc} (got {raw!r})") from None


def _from_environment(spec: SettingSpec, environ: Mapping[str, str]) -> dict[str, Any]:
    """The parsed value of each of the setting's variables that is set; several must agree."""
    given = {name: _parse(spec, name, environ[name]) for name in spec.variables if name in environ}
    for first, other in itertools.pairwise(given):
        if given[other] != given[first]:
            raise ConfigError(
                f"{first} and {other}",
                f"two names of one setting set to different values ({environ[first]!r} and "
                f"{environ[other]!r}): set one of them",
            )
    return given


def make_directory(variable: str, path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(variable, f"cannot create directory {str(path)!r}: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(variable, f"directory {str(path)!r} is not writable")


# --- parsers -------------------------------------------------------------------------------------------


def positive_int(raw: str) -> int:
    value = _int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def non_negative_int(raw: str) -> int:
    value = _int(raw)
    if value < 0:
        raise ValueError("must be zero or a positive integer")
    return value


def optional_non_negative_int(raw: str) -> int | None:
    return None if raw == "" else non_negative_int(raw)


def positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a positive number") from None
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive number")
    return value


def port(raw: str) -> int:
    value = _int(raw, "must be a port number (1-65535)")
    if not 1 <= value <= 65535:
        raise ValueError("must be a port number (1-65535)")
    return value


def optional_port(raw: str) -> int:
    """A port, or 0 / empty to switch the listener off."""
    if raw in ("", "0"):
        return 0
    return port(raw)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be true or false")


def choice(*allowed: str) -> Parser:
    def parse(raw: str) -> str:
        lowered = raw.lower()
        if lowered not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return lowered

    return parse


def path(raw: str) -> Path:
    """A path, made absolute: checkpoints and logs name files by it, whatever the working directory."""
    if not raw:
        raise ValueError("must be a path")
    return Path(raw).expanduser().absolute()


def path_or_word(raw: str) -> str:
    """A path kept as given, or a word meaning something else (``pty``); empty is refused, not ``.``."""
    if not raw:
        raise ValueError("must be a path")
    return raw


def optional_path(raw: str) -> Path | None:
    return path(raw) if raw else None


def optional_str(raw: str) -> str | None:
    return raw or None


def name_list(raw: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not items:
        raise ValueError("must be a comma-separated list of names")
    return items


# core/v1 NodeAddressType values (k8s.io/api/core/v1/types.go), as spelt there.
NODE_ADDRESS_TYPES = ("Hostname", "InternalIP", "ExternalIP", "InternalDNS", "ExternalDNS")


def node_address_types(raw: str) -> tuple[str, ...]:
    """Node address types in order of preference, e.g. ``InternalIP,ExternalIP,Hostname``."""
    canonical = {name.lower(): name for name in NODE_ADDRESS_TYPES}
    items = name_list(raw)
    unknown = [item for item in items if item.lower() not in canonical]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a node address type ({', '.join(NODE_ADDRESS_TYPES)})")
    return tuple(dict.fromkeys(canonical[item.lower()] for item in items))


ALL_NAMESPACES = "*"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def namespaces(raw: str) -> tuple[str, ...]:
    """A comma-separated list of namespaces, or ``*`` for all of them."""
    if raw == ALL_NAMESPACES:
        return (ALL_NAMESPACES,)
    items = name_list(raw)
    for item in items:
        if not _DNS_LABEL.match(item):
            raise ValueError(f"{item!r} is not a valid namespace name")
    return items


def namespace_name(raw: str) -> str:
    if not _DNS_LABEL.match(raw):
        raise ValueError("must be one valid namespace name")
    return raw


def name_prefix(raw: str) -> str:
    """A prefix that, followed by a number, is a valid pod name (DNS label)."""
    if len(raw) > 60 or not _DNS_LABEL.match(raw + "1"):
        raise ValueError("must be lowercase letters, digits and '-', starting with a letter or digit")
    return raw


def optional_namespace(raw: str) -> str | None:
    """One namespace name, or empty for none."""
    return namespace_name(raw) if raw else None


_SIZE = re.compile(r"^(\d+)\s*([kmgt]i?b?|b)?$", re.IGNORECASE)
_POWERS = {"": 0, "b": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def byte_size(raw: str) -> int:
    """A size in bytes: ``1073741824``, ``1GiB``, ``500MB``, ``10Gi``, ``64k``."""
    match = _SIZE.match(raw)
    if not match:
        raise ValueError("must be a size like 1073741824, 1GiB or 500MB")
    number, unit = int(match.group(1)), (match.group(2) or "").lower()
    base = 1024 if "i" in unit else 1000
    value: int = number * base ** _POWERS[unit[:1]]
    if value <= 0:
        raise ValueError("must be a positive size")
    return value


def _int(raw: str, message: str = "must be an integer") -> int:
    try:
        return int(raw, 10)
    except ValueError:
        raise ValueError(message) from None
