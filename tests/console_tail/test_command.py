"""``stats-log-collector console-tail`` as a real process on real files, its stdout a real pipe.

Every test asserts on what came out of the pipe, compared byte for byte with what was written to the console
log (CRLF folded). The writer imitates virtlogd: it appends to the file and, past a size, renames it to
``.0`` after shifting the older ones (``.0`` to ``.1``...), dropping the oldest, then starts a new file, in
the middle of a line if that is where the size limit falls.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stats_log_collector.console_tail.command import CHUNK_BYTES
from stats_log_collector.tail.fileid import rotated_siblings
from stats_log_collector.tail.formats import MAX_PIECE_BYTES, LineAssembler, encode_raw
from stats_log_collector.tail.slot_store import SlotFileStore
from stats_log_collector.tail.stream import StreamOutput, WriteAborted
from stats_log_collector.tail.tailer import Tailer
from tests import helpers

#: At most this much can be written twice across a ``kill -9``: the last batch (one read, plus the
#: unterminated line the assembler held before it).
MAX_REPLAY = CHUNK_BYTES + MAX_PIECE_BYTES + 1


wait_for = functools.partial(helpers.wait_for, timeout=10.0, interval=0.01)


def lines(first: int, count: int) -> bytes:
    return b"".join(b"console line %07d %s\n" % (i, b"x" * (i % 37)) for i in range(first, first + count))


class Tail:
    """One console-tail process; a thread drains its stdout (slowly, if asked) into :attr:`out`."""

    def __init__(
        self, path: Path, stderr: Path, state: Path | None = None, *, read_delay: float = 0.0
    ) -> None:
        args = [sys.executable, "-m", "stats_log_collector", "console-tail", "--file", str(path)]
        if state is not None:
            args += ["--state-file", str(state)]
        self.stderr_path = stderr
        with stderr.open("ab") as err:
            self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err)
        assert self.process.stdout is not None
        self._fd = self.process.stdout.fileno()
        self._read_delay = read_delay
        self._lock = threading.Lock()
        self._out = bytearray()
        self.paused = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        size = 8192 if self._read_delay else 1 << 16
        while True:
            while self.paused.is_set():
                time.sleep(0.01)
            data = os.read(self._fd, size)
            if not data:
                return
            with self._lock:
                self._out += data
            if self._read_delay:
                time.sleep(self._read_delay)

    @property
    def out(self) -> bytes:
        with self._lock:
            return bytes(self._out)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_started(self) -> None:
        """Until the process is past its imports (its signal handlers are in place)."""
        wait_for(lambda: "printing a console log to stdout" in self.stderr, "console-tail to start")

    def wait_out(self, expected: bytes, timeout: float = 10.0) -> None:
        """Until stdout holds ``expected`` (it must never hold anything else than a prefix of it)."""

        def done() -> bool:
            out = self.out
            assert expected.startswith(out), f"unexpected output after {len(out)} bytes: {out[-200:]!r}"
            return out == expected

        wait_for(done, f"{len(expected)} bytes on stdout", timeout=timeout)

    def finish(self) -> bytes:
        """Wait for stdout's end (the process exited, by itself or killed); everything it printed."""
        self.process.wait(timeout=10)
        self.paused.clear()  # what is left in the pipe was written before the end: it counts
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return self.out

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, float]:
        """Send ``signum``; the exit code and the seconds it took."""
        start = time.monotonic()
        self.process.send_signal(signum)
        code = self.process.wait(timeout=10)
        elapsed = time.monotonic() - start
        self.finish()
        return code, elapsed

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.finish()

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


class Virtlogd:
    """Appends to ``path`` and rotates it as virtlogd does: at ``max_size`` bytes, keeping ``backups``."""

    def __init__(self, path: Path, max_size: int = 1 << 30, backups: int = 3) -> None:
        self.path, self.max_size, self.backups = path, max_size, backups
        self.written = bytearray()
        self.rotations = 0
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size

    def write(self, data: bytes) -> None:
        self.written += data
        while data:
            if self._size >= self.max_size:
                self.rotate()
            part = data[: self.max_size - self._size]
            os.write(self._fd, part)
            self._size += len(part)
            data = data[len(part) :]

    def rotate(self) -> None:
        os.close(self._fd)
        oldest = Path(f"{self.path}.{self.backups - 1}")
        if oldest.exists():
            oldest.unlink()
        for i in reversed(range(self.backups - 1)):
            older = Path(f"{self.path}.{i}")
            if older.exists():
                older.rename(f"{self.path}.{i + 1}")
        self.path.rename(f"{self.path}.0")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = 0
        self.rotations += 1

    def close(self) -> None:
        os.close(self._fd)


def steady_writer(log: Virtlogd, first: int, count: int, per_ms: int) -> threading.Thread:
    """A thread writing ``count`` numbered lines, ``per_ms`` per millisecond or so, one write per line."""

    def run() -> None:
        for start in range(first, first + count, per_ms):
            for i in range(start, min(first + count, start + per_ms)):
                log.write(lines(i, 1))
            time.sleep(0.001)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_prints_existing_and_appended_lines_crlf_long_and_partial(tmp_path: Path, tails) -> None:
    path = tmp_path / "virt-serial0-log"
    long_line = bytes(random.Random(1).choice(b"abcdefgh") for _ in range(40_000))
    written = b"\x1b[0mBooting\r\n\r\nempty line above\r\n" + long_line + b"\r\n"
    path.write_bytes(written)
    tail = tails(path)
    tail.wait_out(written.replace(b"\r\n", b"\n"))

    with path.open("ab") as console:
        console.write(b"appended\r\nlogin: ")
        console.flush()
        written += b"appended\r\nlogin: "
        start = time.monotonic()
        tail.wait_out(written.replace(b"\r\n", b"\n"))  # the prompt goes out after 1 s of quiet, no newline
        assert 0.9 < time.monotonic() - start < 3
        console.write(b"root\r\nthe end\r\n")
        written += b"root\r\nthe end\r\n"
    tail.wait_out(written.replace(b"\r\n", b"\n"))  # the rest of the line goes on where it stopped
    assert tail.out.count(b"\n") == written.count(
        b"\n"
    )  # the 40 KB line went out in pieces, no newline added
    assert tail.stop()[0] == 0


def test_waits_for_its_directory_then_its_file(tmp_path: Path, tails) -> None:
    path = tmp_path / "kubevirt-private" / "vmi-uid" / "virt-serial0-log"
    tail = tails(path)
    time.sleep(1.5)
    path.parent.mkdir(parents=True)
    time.sleep(1.0)
    assert tail.process.poll() is None and tail.out == b""
    path.write_bytes(b"first line\n")
    tail.wait_out(b"first line\n", timeout=3)
    with path.open("ab") as console:
        console.write(b"second line\n")
    tail.wait_out(b"first line\nsecond line\n", timeout=3)
    # One line per wait, not one per check.
    assert tail.stderr.count("waiting for the console log's directory") == 1
    assert tail.stderr.count("waiting for the console log's file") == 1
    assert tail.stop()[0] == 0


def test_file_appearing_later_in_an_existing_directory(tmp_path: Path, tails) -> None:
    path = tmp_path / "virt-serial0-log"
    tail = tails(path)
    time.sleep(1.0)
    start = time.monotonic()
    path.write_bytes(b"hello\r\n")
    tail.wait_out(b"hello\n", timeout=3)
    assert time.monotonic() - start < 0.5  # inotify, not a poll
    assert tail.stop()[0] == 0


def test_virtlogd_rotation_under_a_steady_writer(tmp_path: Path, tails) -> None:
    path = tmp_path / "virt-serial0-log"
    log = Virtlogd(path, max_size=64 << 10, backups=3)
    log.write(lines(0, 1000))  # before the start: read from the beginning of the current file
    tail = tails(path)
    tail.wait_out(bytes(log.written))
    writer = steady_writer(log, 1000, 30_000, per_ms=10)
    writer.join()
    tail.wait_out(bytes(log.written))  # nothing lost, nothing repeated, in order
    assert log.rotations > 10
    assert sorted(p.name for p in tmp_path.glob("virt-serial0-log.*")) == [
        f"virt-serial0-log.{i}" for i in range(3)
    ]
    assert tail.stop()[0] == 0
    log.close()


def check_runs(runs: list[bytes], expected: bytes) -> None:
    """The runs' outputs are the input in order: each run is a contiguous slice of it, starting at or before
    where the previous one stopped (no gap), and repeating at most :data:`MAX_REPLAY` bytes (the batch
    interrupted by the kill) at its start; together they reach the end."""
    pos = 0
    for n, out in enumerate(runs):
        if not out:
            continue
        probe = out[:200]
        start = expected.rfind(probe, max(0, pos - MAX_REPLAY), pos + len(probe))
        assert start >= 0, f"run {n} does not continue where run {n - 1} stopped (at {pos}): {probe[:80]!r}"
        assert expected[start : start + len(out)] == out, f"run {n} is not the input from {start}"
        assert n > 0 or start == 0
        pos = max(pos, start + len(out))
    assert pos == len(expected), f"only {pos} of {len(expected)} bytes came out"


def test_kill_9_loop_under_a_steady_writer_loses_nothing(tmp_path: Path, tails) -> None:
    path = tmp_path / "virt-serial0-log"
    state = tmp_path / "state" / "console.state"
    log = Virtlogd(path, max_size=256 << 10, backups=3)
    log.write(lines(0, 100))
    tail = tails(path, state)
    tail.wait_out(bytes(log.written))  # the first run has a checkpoint: the file may rotate from now on
    writer = steady_writer(log, 100, 40_000, per_ms=5)
    rng = random.Random(9)
    runs: list[bytes] = []
    while writer.is_alive():
        if runs:
            tail = tails(path, state)
        time.sleep(rng.uniform(0.15, 0.6))
        if len(runs) % 2:  # the reader stops: the pipe fills up and the kill comes in a blocked write
            tail.paused.set()
            time.sleep(0.4)
        tail.process.send_signal(signal.SIGKILL)
        runs.append(tail.finish())
    tail = tails(path, state)
    tail.wait_started()
    end = bytes(log.written)[-200:]
    wait_for(lambda: (runs[-1] + tail.out).endswith(end), "the last run to catch up", timeout=15)
    assert tail.stop()[0] == 0
    runs.append(tail.out)
    log.close()
    assert len(runs) > 8 and log.rotations > 3
    check_runs(runs, bytes(log.written))
    assert (tmp_path / "state" / "console.state.a.json").exists()
    replays = sum("writing it again" in p.read_text() for p in tmp_path.glob("console-tail.*.stderr"))
    print(f"{len(runs)} runs, {log.rotations} rotations, {replays} interrupted batches written again")
    assert replays > 0


def test_flooded_console_with_a_slow_reader_drops_nothing_in_little_memory(tmp_path: Path, tails) -> None:
    path = tmp_path / "virt-serial0-log"
    path.touch()
    tail = tails(path, read_delay=0.001)  # 8 KiB per millisecond at most: far slower than the writer
    tail.wait_started()
    log = Virtlogd(path)
    flood = lines(0, 200_000)
    written_at = time.monotonic()
    for i in range(0, len(flood), 1 << 16):
        log.write(flood[i : i + (1 << 16)])
    written_in = time.monotonic() - written_at
    peak = 0
    deadline = time.monotonic() + 30
    while tail.out != flood:
        assert time.monotonic() < deadline, f"{len(tail.out)} of {len(flood)} bytes"
        peak = max(peak, tail.rss_kib())
        time.sleep(0.02)
    assert tail.out == flood
    print(f"flood: {len(flood)} bytes written in {written_in:.2f} s; console-tail peak VmRSS {peak} kB")
    assert peak < 30 * 1024
    assert tail.stop()[0] == 0
    log.close()


def test_sigterm_stops_quickly_commits_and_a_restart_repeats_nothing(tmp_path: Path, tails) -> None:
    path = tmp_path / "virt-serial0-log"
    state = tmp_path / "console.state"
    path.write_bytes(lines(0, 100) + b"half a li")
    tail = tails(path, state)
    tail.wait_out(lines(0, 100) + b"half a li")  # after 1 s of quiet
    code, elapsed = tail.stop()
    assert code == 0 and elapsed < 5
    with path.open("ab") as console:
        console.write(b"ne\n" + lines(100, 10))
    tail = tails(path, state)
    tail.wait_out(b"ne\n" + lines(100, 10))
    code, elapsed = tail.stop(signal.SIGINT)
    assert code == 0 and elapsed < 5


def test_sigterm_while_the_reader_takes_nothing(tmp_path: Path, tails) -> None:
    path = tmp_path / "virt-serial0-log"
    state = tmp_path / "console.state"
    content = lines(0, 100_000)  # far more than a pipe holds
    path.write_bytes(content)
    tail = tails(path, state)
    tail.paused.set()
    tail.wait_started()
    time.sleep(0.5)  # the pipe is full, the process is blocked writing to it
    code, elapsed = tail.stop()
    assert code == 0 and elapsed < 5
    assert "stdout took nothing in time" in tail.stderr
    first = tail.out
    restarted = tails(path, state)
    wait_for(lambda: restarted.out.endswith(content[-200:]), "the restart to finish the file")
    assert restarted.stop()[0] == 0
    check_runs([first, restarted.out], content)


def test_reader_gone_exits_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "virt-serial0-log"
    path.write_bytes(b"before\n")
    stderr = tmp_path / "console-tail.stderr"
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "stats_log_collector", "console-tail", "--file", str(path)],
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        assert process.stdout is not None
        assert process.stdout.read(7) == b"before\n"
        process.stdout.close()  # the reader is gone
        with path.open("ab") as console:
            console.write(b"nobody reads this\n")
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
    assert "stdout is closed" in stderr.read_text()
    assert "Traceback" not in stderr.read_text()


def test_no_file_setting_is_a_configuration_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stats_log_collector", "console-tail"],
        capture_output=True,
        env={k: v for k, v in os.environ.items() if k != "CONSOLE_LOG_FILE"},
        timeout=10,
    )
    assert result.returncode == 2
    assert result.stderr == (
        b"stats-log-collector console-tail: configuration error: CONSOLE_LOG_FILE: required (or --file):"
        b" the console log to follow\n"
    )


# ---------------------------------------------------------------------------------------------------------
# The engine pieces console-tail adds, in process


def test_raw_encoding_is_the_console_text() -> None:
    rng = random.Random(3)
    for _ in range(200):
        data = bytes(rng.choice(b"ab\r\n\xc3\xa9") for _ in range(rng.randrange(200)))
        asm, out = LineAssembler(max_piece=8), []
        for i in range(0, len(data), 7):
            out.append(encode_raw(asm.feed(data[i : i + 7]), b""))
            if rng.random() < 0.3:
                out.append(encode_raw(asm.flush(), b""))  # idle: a partial piece, no newline
        out.append(encode_raw(asm.flush(final=True), b""))
        assert b"".join(out) == data.replace(b"\r\n", b"\n")


class _DyingStream(StreamOutput):
    """Delivers the first 100 bytes of a batch, then the process "stops" in the write."""

    def write(self, fd: int, data: memoryview) -> int:
        super().write(fd, data[:100])
        raise WriteAborted


def test_a_stream_writes_an_interrupted_batch_again_and_commits_each_batch(tmp_path: Path) -> None:
    source = tmp_path / "virt-serial0-log"
    source.write_bytes(lines(0, 50))
    (tmp_path / "state").mkdir()
    store = SlotFileStore(tmp_path / "state")
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    try:
        dying = Tailer(source, _DyingStream(write_end), store, fmt="raw")
        with pytest.raises(WriteAborted):
            dying.poll(0.0)
        dying.close()  # as console-tail does: the interrupted batch stays recorded as an intent
        assert os.read(read_end, 1 << 16) == lines(0, 50)[:100]

        crashed = Tailer(source, StreamOutput(write_end), SlotFileStore(tmp_path / "state"), fmt="raw")
        crashed.poll(0.0)  # then abandoned without close(), as after kill -9
        assert os.read(read_end, 1 << 16) == lines(0, 50)  # the whole batch again: at least once

        with source.open("ab") as console:
            console.write(lines(50, 1))
        after = Tailer(source, StreamOutput(write_end), SlotFileStore(tmp_path / "state"), fmt="raw")
        after.poll(0.0)
        assert os.read(read_end, 1 << 16) == lines(50, 1)  # committed right after its write: not repeated
        after.close()
    finally:
        os.close(read_end)
        os.close(write_end)


def test_virtlogd_names_sort_oldest_first_even_within_one_clock_tick(tmp_path: Path) -> None:
    path = tmp_path / "virt-serial0-log"
    for name in ("virt-serial0-log.0", "virt-serial0-log.2", "virt-serial0-log.1", "virt-serial0-log.10"):
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, ns=(10**18, 10**18))
    names = [sibling.path.name for sibling in rotated_siblings(path)]
    assert names == ["virt-serial0-log.10", "virt-serial0-log.2", "virt-serial0-log.1", "virt-serial0-log.0"]


def test_sighup_stops_like_sigterm_and_commits(tmp_path: Path, tails) -> None:
    path = tmp_path / "virt-serial0-log"
    path.write_bytes(b"before the hangup\r\n")
    state = tmp_path / "state" / "console.state"
    tail = tails(path, state)
    tail.wait_out(b"before the hangup\n")
    assert tail.stop(signal.SIGHUP)[0] == 0
    with path.open("ab") as console:
        console.write(b"after\r\n")
    again = tails(path, state)  # the checkpoint was committed: nothing is repeated
    again.wait_out(b"after\n")
    time.sleep(0.3)
    assert again.out == b"after\n"
    assert again.stop()[0] == 0
