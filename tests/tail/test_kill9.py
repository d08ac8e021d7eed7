"""Real processes: kill -9 at random moments under a steady writer, rotation under load.

The tailer runs in the fault driver (``faults/driver.py``), the console in ``faults/writer.py``.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tail.tailing import Env, assert_same

FAULTS = Path(__file__).parent / "faults"


def spawn(script: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(FAULTS / script), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def spawn_driver(env: Env, *extra: str) -> subprocess.Popen[bytes]:
    """The tailer in its own process, logging to ``driver.log`` next to the state directory."""
    log = env.state.parent / "driver.log"
    return spawn(
        "driver.py", str(env.source), str(env.output), str(env.state), env.fmt, "--log", str(log), *extra
    )


def spawn_writer(env: Env, record: Path, *extra: str) -> subprocess.Popen[bytes]:
    return spawn("writer.py", str(env.source), str(record), *extra)


def run_driver_until_caught_up(env: Env) -> None:
    driver = spawn_driver(env, "--until-idle")
    _, err = driver.communicate(timeout=30)
    assert driver.returncode == 0, err.decode()


def kill_loop(env: Env, writer: subprocess.Popen[bytes], kills: int, rng: random.Random) -> int:
    """Start the driver and ``kill -9`` it at a random moment, again and again while the writer runs and at
    least ``kills`` times; returns how many kills there were."""
    done = 0
    while done < kills or writer.poll() is None:
        driver = spawn_driver(env)
        time.sleep(rng.uniform(0.05, 0.3))
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        done += 1
    return done


def finish(env: Env, writer: subprocess.Popen[bytes], record: Path) -> None:
    """Wait for the writer, then let one last driver catch up."""
    _, err = writer.communicate(timeout=30)
    assert writer.returncode == 0, err.decode()
    env.written = record.read_bytes()
    run_driver_until_caught_up(env)


def wait_for_output(env: Env, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not (env.output.exists() and env.output.stat().st_size):
        assert time.monotonic() < deadline, "the driver wrote nothing"
        time.sleep(0.01)


def prime(env: Env, record: Path) -> subprocess.Popen[bytes]:
    """A first line, followed by a running driver: from then on a checkpoint exists.

    Without it a rotation could happen before any driver saved a checkpoint, and a tailer that has none
    rightly starts with the current file, not with rotated files it never knew.
    """
    record.write_bytes(b"ready\n")
    env.append(b"ready\n")
    driver = spawn_driver(env)
    wait_for_output(env)
    return driver


@pytest.mark.parametrize("fmt", ["cri", "json"])
def test_kill_9_loop_under_a_steady_writer(tmp_path: Path, fmt: str) -> None:
    env = Env(tmp_path, fmt)
    record = tmp_path / "written.bin"
    writer = spawn_writer(env, record, "--lines", "6000", "--rate", "1500")
    kills = kill_loop(env, writer, 20, random.Random(fmt))
    finish(env, writer, record)
    assert kills >= 20
    assert len(env.written) > 1_000_000
    assert_same(env.rebuilt(), env.expected())


@pytest.mark.parametrize("mode", ["rename", "copytruncate"])
def test_rotation_under_load_with_kills(tmp_path: Path, mode: str) -> None:
    env = Env(tmp_path, "cri")
    record = tmp_path / "written.bin"
    first = prime(env, record)
    first.send_signal(signal.SIGKILL)
    first.wait()
    writer = spawn_writer(
        env, record, "--lines", "3000", "--rate", "1500", "--rotate", mode, "--rotate-every", "300"
    )
    kill_loop(env, writer, 8, random.Random(mode))
    finish(env, writer, record)
    assert len(list(env.source.parent.glob("vm_0.log.*"))) == 9
    assert_same(env.rebuilt(), env.expected())


@pytest.mark.parametrize("mode", ["rename", "copytruncate"])
def test_driver_follows_rotation_live(tmp_path: Path, mode: str) -> None:
    env = Env(tmp_path, "json")
    record = tmp_path / "written.bin"
    driver = prime(env, record)
    writer = spawn_writer(
        env, record, "--lines", "3000", "--rate", "3000", "--rotate", mode, "--rotate-every", "200"
    )
    try:
        _, err = writer.communicate(timeout=30)
        assert writer.returncode == 0, err.decode()
        env.written = record.read_bytes()
        deadline = time.monotonic() + 10
        while env.rebuilt() != env.expected() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert_same(env.rebuilt(), env.expected())


def test_kill_at_each_step_of_a_batch(tmp_path: Path) -> None:
    """The driver kills itself right after each step of a batch in turn: deterministic crash points.

    fluent-bit#5912 lost lines when the offset was saved before delivery; here every crash point is tried.
    """
    env = Env(tmp_path, "cri")
    rng = random.Random(7)
    points = ["after-intent", "mid-write", "after-write", "after-commit"]
    for i in range(12):
        env.append(
            b"".join(b"batch %d line %d %s\r\n" % (i, j, b"w" * rng.randrange(0, 3000)) for j in range(30))
        )
        driver = spawn_driver(env, "--die", points[i % 4])
        driver.wait(timeout=20)
        assert driver.returncode == -signal.SIGKILL
    run_driver_until_caught_up(env)
    assert_same(env.rebuilt(), env.expected())
