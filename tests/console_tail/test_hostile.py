"""console-tail against hostile neighbours: its own state files next to the console, a second instance on
the same state, a console swapped for a symbolic link. Real processes, real files, a real pipe."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.console_tail.test_command import Virtlogd, lines, wait_for


def test_state_file_next_to_the_console_is_never_a_rotated_file(tmp_path: Path, tails) -> None:
    """STATE_FILE=<console>.state: its slots <console>.state.a.json match ``<console>.*``; after virtlogd
    rotates the console, they must not be printed (nor taken for a truncated copy)."""
    path = tmp_path / "virt-serial0-log"
    state = tmp_path / "virt-serial0-log.state"
    log = Virtlogd(path, max_size=4 << 10, backups=3)
    log.write(lines(0, 20))
    tail = tails(path, state)
    tail.wait_out(bytes(log.written))
    assert (tmp_path / "virt-serial0-log.state.a.json").exists()
    for start in range(20, 400, 20):  # several rotations, each followed by new lines
        log.write(lines(start, 20))
        time.sleep(0.01)
    assert log.rotations >= 3
    tail.wait_out(bytes(log.written))
    time.sleep(0.3)
    assert tail.out == bytes(log.written)
    assert "truncated" not in tail.stderr
    assert tail.stop()[0] == 0
    log.close()


def test_a_second_instance_on_the_same_state_file_exits_2_and_touches_nothing(tmp_path: Path, tails) -> None:
    path = tmp_path / "virt-serial0-log"
    state = tmp_path / "state" / "console"
    path.write_bytes(lines(0, 10))
    first = tails(path, state)
    first.wait_out(lines(0, 10))
    slots = {p.name: p.read_bytes() for p in state.parent.glob("*.json")}
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "stats_log_collector",
            "console-tail",
            "--file",
            str(path),
            "--state-file",
            str(state),
        ],
        capture_output=True,
        timeout=30,
    )
    assert second.returncode == 2
    assert second.stdout == b""
    message = second.stderr.decode().strip()
    assert "\n" not in message and "STATE_FILE" in message and str(state.parent) in message
    assert f"pid {first.process.pid}" in message
    assert {p.name: p.read_bytes() for p in state.parent.glob("*.json")} == slots
    with path.open("ab") as console:
        console.write(lines(10, 5))
    first.wait_out(lines(0, 15))
    first.kill()  # kill -9: the kernel frees the lock
    third = tails(path, state)
    with path.open("ab") as console:
        console.write(lines(15, 5))
    wait_for(lambda: third.out.endswith(lines(15, 5)), "a new instance after kill -9")
    assert third.stop()[0] == 0


def test_console_swapped_for_a_symbolic_link_is_refused(tmp_path: Path, tails) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"root:SECRET-HASH:19000::::::\n")
    path = tmp_path / "virt-serial0-log"
    path.write_bytes(b"boot\n")
    tail = tails(path)
    tail.wait_out(b"boot\n")
    os.symlink(secret, tmp_path / "t")
    os.rename(tmp_path / "t", path)  # mv -T t <console>
    wait_for(lambda: "source refused" in tail.stderr, "the refusal in the log")
    time.sleep(0.5)
    assert tail.out == b"boot\n"
    assert tail.stderr.count("source refused") == 1
    path.unlink()
    path.write_bytes(b"after\n")  # a real console again: followed
    tail.wait_out(b"boot\nafter\n")
    assert tail.stop()[0] == 0
