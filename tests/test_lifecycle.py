"""SIGTERM, SIGINT and SIGHUP stop a component cleanly, in time, with its state flushed: real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

COMPONENT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from stats_log_collector import lifecycle

    out = Path(sys.argv[1])
    stubborn = sys.argv[2] == "stubborn"

    async def component(stop: asyncio.Event) -> None:
        out.write_text("started\\n")
        try:
            if stubborn:
                await asyncio.sleep(3600)  # ignores the stop event: must be cancelled
            await stop.wait()
            out.write_text(out.read_text() + "flushed\\n")
        finally:
            out.write_text(out.read_text() + "finally\\n")

    lifecycle.run(component, grace=1.0)
    """
)


def start(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / "state"
    process = subprocess.Popen([sys.executable, "-c", COMPONENT, str(out), mode])
    deadline = time.monotonic() + 30
    while not (out.exists() and out.read_text()):
        assert time.monotonic() < deadline, "component did not start"
        time.sleep(0.05)
    return process, out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_stops_and_flushes(tmp_path: Path, signum: int) -> None:
    process, out = start(tmp_path, "cooperative")
    began = time.monotonic()
    process.send_signal(signum)
    assert process.wait(timeout=5) == 0
    assert time.monotonic() - began < 5
    assert out.read_text() == "started\nflushed\nfinally\n"


def test_component_that_ignores_stop_is_cancelled_after_grace(tmp_path: Path) -> None:
    process, out = start(tmp_path, "stubborn")
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 0
    assert 0.9 < time.monotonic() - began < 5
    assert out.read_text() == "started\nfinally\n"
