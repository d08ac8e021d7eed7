"""virtlet-log against hostile input, as a real process on real directories: consoles swapped for symbolic
links or FIFOs, names no kubelet log can have, a second instance on the same state, lost checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.virtlet_log import test_command
from tests.virtlet_log.test_command import UID, Logger, console_text, wait_for, write

SECRET = b"root:SECRET-HASH:19000:0:99999:7:::\n"


#: The logger processes of a test (test_command's fixture), killed at its end.
logger = test_command.logger


def started(make: Callable[..., Logger], first: bytes) -> tuple[Logger, Path, Path]:
    """A running virtlet-log following ``vm_0.log``, which holds ``first``: (it, the source, the output)."""
    node = make()
    (node.pods / UID).mkdir(exist_ok=True)
    node.start()
    source, output = node.vms / UID / "vm_0.log", node.pods / UID / "vm_0.log"
    write(source, first)
    wait_for(lambda: console_text(output) == first, "console forwarded")
    return node, source, output


def swap_in(path: Path, make: Callable[[Path], object]) -> None:
    """``make`` a file next to ``path``, then rename it over ``path`` (``mv -T``): one atomic swap."""
    temporary = path.with_name("swap.tmp")
    make(temporary)
    os.rename(temporary, path)


def test_console_swapped_for_a_symlink_is_refused_and_never_read(logger, tmp_path: Path) -> None:
    """``ln -s /etc/shadow t && mv -T t <src>/<sandbox>/vm_0.log`` must not put the file in the pod log."""
    secret = tmp_path / "shadow"
    secret.write_bytes(SECRET)
    node, source, output = started(logger, b"boot\n")
    swap_in(source, lambda path: path.symlink_to(secret))
    wait_for(lambda: b"source refused" in node.stderr or SECRET in output.read_bytes(), "the swap seen")
    time.sleep(0.3)
    assert SECRET not in output.read_bytes()
    assert console_text(output) == b"boot\n"
    assert node.stderr.count(b"source refused") == 1
    assert b"symbolic link" in node.stderr
    swap_in(source, lambda path: path.write_bytes(b"after\n"))  # a real console again: followed
    wait_for(lambda: console_text(output) == b"boot\nafter\n", "the regular file after the link")


def test_sandbox_folder_swapped_for_a_symlink_is_refused_and_never_read(logger, tmp_path: Path) -> None:
    """``mv -T`` of a link over the sandbox folder: O_NOFOLLOW on the console's name alone would open
    ``<elsewhere>/vm_0.log`` through the link; every folder below the source root is checked."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "vm_0.log").write_bytes(SECRET)
    node, source, output = started(logger, b"boot\n")
    source.parent.rename(tmp_path / "moved")  # a link cannot be renamed over a folder: moved away first
    source.parent.symlink_to(elsewhere, target_is_directory=True)
    with (tmp_path / "moved" / "vm_0.log").open("ab") as moved:  # the open file grows: read, then the path
        moved.write(b"more\n")  # looked at again, which now leads through the link
    wait_for(lambda: b"source refused" in node.stderr or SECRET in output.read_bytes(), "the swap seen")
    time.sleep(0.3)
    assert SECRET not in output.read_bytes()
    assert console_text(output) == b"boot\nmore\n"
    assert b"symbolic link in the path" in node.stderr


def test_rotated_sibling_that_is_a_symlink_is_never_read(logger, tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_bytes(SECRET)
    node, source, output = started(logger, b"one\n")
    assert node.stop() == 0
    # While virtlet-log is down: rotated twice, the newer rotated name a link to a secret.
    os.rename(source, source.with_name("vm_0.log.2"))
    (source.with_name("vm_0.log.1")).symlink_to(secret)
    write(source, b"two\n")
    node.start()
    wait_for(lambda: console_text(output) == b"one\ntwo\n", "the current file after restart")
    write(source, b"three\n")
    os.rename(source, source.with_name("vm_0.log.0"))  # a live rotation next to the link
    write(source, b"four\n")
    wait_for(lambda: console_text(output) == b"one\ntwo\nthree\nfour\n", "after a live rotation")
    time.sleep(0.3)
    assert SECRET not in output.read_bytes()


def test_console_swapped_for_a_fifo_does_not_hang_the_others(logger) -> None:
    node, source, output = started(logger, b"boot\n")
    swap_in(source, os.mkfifo)
    wait_for(lambda: b"source refused" in node.stderr, "the FIFO refused")
    other, other_output = node.vms / UID / "other_0.log", node.pods / UID / "other_0.log"
    write(other, b"still served\n")
    wait_for(lambda: console_text(other_output) == b"still served\n", "another console after the FIFO")
    assert node.process is not None and node.process.poll() is None
    assert console_text(output) == b"boot\n"


def test_console_name_with_a_newline_is_refused_once_and_blocks_nothing(logger) -> None:
    node = logger()
    (node.pods / UID).mkdir()
    node.start()
    bad = node.vms / UID / "evil\nname_0.log"
    write(bad, b"forged\n")
    write(node.vms / UID / "vm_0.log", b"good\n")
    output = node.pods / UID / "vm_0.log"
    wait_for(lambda: console_text(output) == b"good\n", "the other console")
    for _ in range(3):
        write(bad, b"more\n")  # every event about it: still one log line
        time.sleep(0.05)
    wait_for(lambda: b"control character" in node.stderr, "the refusal")
    time.sleep(0.3)
    assert node.stderr.count(b"control character") == 1
    assert sorted(p.name for p in (node.pods / UID).iterdir()) == ["vm_0.log"]


def test_one_instance_per_state_dir(logger) -> None:
    node, source, output = started(logger, b"one\n")
    state_before = {p.name: p.read_bytes() for p in node.state.iterdir() if p.suffix == ".json"}
    second = subprocess.run(
        [sys.executable, "-m", "stats_log_collector", "virtlet-log"],
        env=node.env,
        capture_output=True,
        timeout=30,
    )
    assert second.returncode == 2
    message = second.stderr.decode().strip()
    assert "\n" not in message
    assert "STATE_DIR" in message and str(node.state) in message and "in use" in message
    assert {p.name: p.read_bytes() for p in node.state.iterdir() if p.suffix == ".json"} == state_before
    write(source, b"two\n")
    wait_for(lambda: console_text(output) == b"one\ntwo\n", "the first instance goes on")
    node.kill()  # kill -9: the kernel frees the lock
    write(source, b"three\n")
    node.start()
    wait_for(lambda: console_text(output) == b"one\ntwo\nthree\n", "a new instance after kill -9")
    time.sleep(0.3)
    assert console_text(output) == b"one\ntwo\nthree\n"


def numbered(first: int, count: int, end: bytes = b"\r\n") -> bytes:
    return b"".join(b"console line %05d \xc3\xa9 \xff%s" % (i, end) for i in range(first, first + count))


def as_read(console: bytes, fmt: str) -> bytes:
    """What kubelet reads of ``console``: CRLF folded, and in JSON invalid UTF-8 replaced."""
    folded = console.replace(b"\r\n", b"\n")
    return folded.replace(b"\xff", "\ufffd".encode()) if fmt == "json" else folded


def slots(node: Logger) -> list[Path]:
    return sorted(node.state.glob("*.json"))


@pytest.mark.parametrize("fmt", ["cri", "json"])
def test_checkpoints_deleted_after_kill_9_resume_where_the_output_ends(logger, fmt: str) -> None:
    node = logger(LOG_FORMAT=fmt)
    (node.pods / UID).mkdir()
    node.start()
    source, output = node.vms / UID / "vm_0.log", node.pods / UID / "vm_0.log"
    long_line = b"L" * 40_000 + b"\n"  # three records: split at 16 KiB
    written = numbered(0, 300) + long_line + numbered(300, 10)
    write(source, written)
    wait_for(lambda: console_text(output) == as_read(written, fmt), "console forwarded")
    node.kill()
    assert slots(node)
    for slot in slots(node):
        slot.unlink()
    write(source, numbered(310, 5))
    written += numbered(310, 5)
    node.start()
    expected = written.replace(b"\r\n", b"\n").replace(
        b"\xff", "\ufffd".encode() if fmt == "json" else b"\xff"
    )
    wait_for(lambda: console_text(output) == expected, "every line once after the restart")
    time.sleep(0.3)
    assert console_text(output) == expected
    assert node.stderr.count(b"going on where the output ends") == 1


def test_corrupt_checkpoints_and_a_partial_line_resume_mid_line(logger) -> None:
    node = logger()
    (node.pods / UID).mkdir()
    node.start()
    source, output = node.vms / UID / "vm_0.log", node.pods / UID / "vm_0.log"
    write(source, numbered(0, 50) + b"login: ")
    wait_for(lambda: console_text(output).endswith(b"login: "), "the idle prompt as a partial record")
    assert node.stop() == 0
    for slot in slots(node):
        slot.write_bytes(b"\x00garbage" * 200)
    write(source, b"root\r\n" + numbered(50, 5))
    node.start()
    expected = (numbered(0, 50) + b"login: root\r\n" + numbered(50, 5)).replace(b"\r\n", b"\n")
    wait_for(lambda: console_text(output) == expected, "the line completed, every line once")
    time.sleep(0.3)
    assert console_text(output) == expected
    assert b"corrupt checkpoint ignored" in node.stderr
    assert b"going on where the output ends" in node.stderr


def test_without_checkpoint_a_console_rotated_away_is_read_from_its_start(logger) -> None:
    node = logger()
    (node.pods / UID).mkdir()
    node.start()
    source, output = node.vms / UID / "vm_0.log", node.pods / UID / "vm_0.log"
    write(source, numbered(0, 20))
    wait_for(lambda: console_text(output) == numbered(0, 20, b"\n"), "console forwarded")
    assert node.stop() == 0
    for slot in slots(node):
        slot.unlink()
    os.rename(source, source.with_name("vm_0.log.1"))
    write(source, numbered(20, 5))  # what the output ends with is not in the current file
    node.start()
    wait_for(lambda: console_text(output) == numbered(0, 25, b"\n"), "the new file whole, once")
    assert b"reading it from the start" in node.stderr
