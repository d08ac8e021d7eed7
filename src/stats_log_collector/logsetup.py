"""The tool's own logs: stderr, one line per event, text or JSON lines.

One line per event matters because these logs are themselves read by kubelet and log shippers, which
split on newlines: a multi-line traceback would become several unrelated events. So newlines inside a
message or a traceback are escaped as ``\\n``. Structured fields are passed the standard way,
``log.info("poll done", extra={"vms": 3})``, and rendered as ``key=value`` or as JSON keys.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from .settings import LoggingSettings

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRS}


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _exception_text(record: logging.LogRecord, formatter: logging.Formatter) -> str | None:
    if record.exc_info:
        return formatter.formatException(record.exc_info)
    return None


class TextFormatter(logging.Formatter):
    """``2026-11-23T10:00:00.123Z INFO memstat: poll done vms=3 duration_s=0.2``."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, f"{record.name}: {record.getMessage()}"]
        parts += [f"{key}={_render_value(value)}" for key, value in record_fields(record).items()]
        exception = _exception_text(record, self)
        if exception:
            parts.append(f"exc={exception}")
        return _one_line(" ".join(parts))


def _render_value(value: Any) -> str:
    text = str(value)
    if not text or any(char in text for char in ' ="'):
        return json.dumps(text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg, the extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(record_fields(record))
        exception = _exception_text(record, self)
        if exception:
            entry["exc"] = exception
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(settings: LoggingSettings, stream: TextIO | None = None) -> None:
    """Route every logger to stderr with the chosen format and level (replaces earlier handlers)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format_json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # Libraries log every request at INFO/DEBUG; they are only worth seeing when we debug.
    library_level = logging.DEBUG if settings.log_level == "debug" else logging.WARNING
    for name in ("httpx", "httpcore", "kr8s", "aiohttp.access", "asyncio"):
        logging.getLogger(name).setLevel(library_level)
    logging.captureWarnings(True)
