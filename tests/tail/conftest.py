"""Fixtures of the tailing engine's tests: an :class:`~tests.tail.tailing.Env` per log format."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tail.tailing import Env


@pytest.fixture(params=["cri", "json"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Env:
    return Env(tmp_path, request.param)


@pytest.fixture
def cri(tmp_path: Path) -> Env:
    return Env(tmp_path, "cri")
