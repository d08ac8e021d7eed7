"""The tool's own logs: one line per event, text or JSON, level from LOG_LEVEL."""

from __future__ import annotations

import io
import json
import logging

import pytest

from stats_log_collector import logsetup
from stats_log_collector.settings import LoggingSettings


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def emit(settings: LoggingSettings) -> list[str]:
    stream = io.StringIO()
    logsetup.configure(settings, stream)
    log = logging.getLogger("stats_log_collector.test")
    log.debug("hidden at info")
    log.info("poll done", extra={"vms": 3, "node": "node a"})
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        log.exception("sample failed")
    return stream.getvalue().splitlines()


def test_text_lines(restore_logging) -> None:
    lines = emit(LoggingSettings(log_level="info", log_format_json=False))
    assert len(lines) == 2, lines  # the debug line is filtered; the traceback stays on its line
    assert ' INFO stats_log_collector.test: poll done vms=3 node="node a"' in lines[0]
    assert lines[0][:4].isdigit() and "Z INFO" in lines[0]
    assert "ERROR stats_log_collector.test: sample failed exc=Traceback" in lines[1]
    assert "ValueError: bad\\nvalue" in lines[1]


def test_json_lines(restore_logging) -> None:
    lines = emit(LoggingSettings(log_level="info", log_format_json=True))
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["msg"] == "poll done" and first["level"] == "info" and first["vms"] == 3
    assert first["logger"] == "stats_log_collector.test" and first["time"].endswith("Z")
    assert second["level"] == "error" and "ValueError: bad\nvalue" in second["exc"]


def test_debug_level_shows_debug(restore_logging) -> None:
    lines = emit(LoggingSettings(log_level="debug", log_format_json=False))
    assert "hidden at info" in lines[0]
