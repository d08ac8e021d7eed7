"""Fault injection and the request journal.

A collector that runs for months meets every failure an API server can produce: 429 with
``Retry-After`` under load, 500/503 during upgrades, requests that hang, connections dropped
mid-flight, pods that disappear between the list and the next call. Tests arm these faults by
URL pattern and count; the journal records every request with its final status, so tests and
benchmarks can assert on retries and on the number of API calls a cycle costs.

Both are touched from the test's thread and from the server's loop, hence the locks.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs

from .errors import ApiError

FaultKind = Literal["status", "timeout", "drop"]

_FAULT_MESSAGES: dict[int, str] = {
    500: "Internal error occurred: injected fault",
    503: "the server is currently unable to handle the request (injected fault)",
}


@dataclass
class Fault:
    """One armed fault; ``remaining`` is how many more requests it hits (``None``: all of them)."""

    kind: FaultKind
    pattern: re.Pattern[str]
    method: str | None = None
    status: int = 500
    seconds: float = 0.0
    remaining: int | None = 1
    hits: int = 0
    query: re.Pattern[str] | None = None  # also required of the query string (e.g. ``continue=``)

    def matches(self, method: str, path: str, query: str = "") -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.query is not None and self.query.search(query) is None:
            return False
        return self.pattern.search(path) is not None

    def error(self) -> ApiError:
        """The ``Status`` error an API server under this condition answers with."""
        if self.status == 429:
            return ApiError(
                429,
                details={"causes": [{"message": "injected fault"}], "retryAfterSeconds": 1},
                headers={"Retry-After": "1"},
            )
        return ApiError(
            self.status, _FAULT_MESSAGES.get(self.status), details={"causes": [{"message": "injected fault"}]}
        )


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str, query: str = "") -> Fault | None:
        """The first armed fault matching this request, spent by one."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path, query):
                    fault.hits += 1
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it; ``status`` is ``None`` while it runs, 0 if dropped."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int | None
    started: float

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class _Entry:
    method: str
    path: str
    query_string: str
    started: float = field(default_factory=time.time)
    status: int | None = None


class Journal:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []

    def begin(self, method: str, path: str, query_string: str) -> _Entry:
        entry = _Entry(method, path, query_string)
        with self._lock:
            self._entries.append(entry)
        return entry

    def records(self) -> list[RequestRecord]:
        with self._lock:
            entries = list(self._entries)
        return [
            RequestRecord(
                entry.method,
                entry.path,
                parse_qs(entry.query_string, keep_blank_values=True),
                entry.status,
                entry.started,
            )
            for entry in entries
        ]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def compile_pattern(path_regex: str | re.Pattern[str]) -> re.Pattern[str]:
    return path_regex if isinstance(path_regex, re.Pattern) else re.compile(path_regex)
