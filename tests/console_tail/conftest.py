"""The console-tail processes of a test, killed at its end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.console_tail.test_command import Tail


@pytest.fixture
def tails(tmp_path: Path) -> Iterator[Callable[..., Tail]]:
    started: list[Tail] = []

    def start(path: Path, state: Path | None = None, **kwargs: float) -> Tail:
        tail = Tail(path, tmp_path / f"console-tail.{len(started)}.stderr", state, **kwargs)
        started.append(tail)
        return tail

    yield start
    for tail in started:
        tail.kill()
