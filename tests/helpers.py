"""Helpers that tests of every component use: a free port, a plain HTTP GET, waiting for a condition."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http(port: int, path: str) -> tuple[int, bytes]:
    """GET ``path`` on 127.0.0.1: (status, body); (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def wait_for(
    condition: Callable[[], bool],
    what: str,
    timeout: float = 20.0,
    *,
    interval: float = 0.05,
    not_yet: tuple[type[Exception], ...] = (),
) -> None:
    """Poll ``condition`` until it holds; ``not_yet`` exceptions (a file read mid-write...) mean "not yet"."""
    deadline = time.monotonic() + timeout
    problem = ""
    while True:
        try:
            if condition():
                return
        except not_yet as exc:
            problem = f" (last try: {exc})"
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}{problem}")
        time.sleep(interval)


async def until(condition: Callable[[], bool], what: str = "the condition", seconds: float = 10.0) -> None:
    """``wait_for`` for async tests: polls without blocking the event loop."""
    deadline = time.monotonic() + seconds
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
