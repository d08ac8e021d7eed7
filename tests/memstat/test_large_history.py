"""A 1 GB mem-stats.csv (plus an archive) served by the real memstat process with flat memory.

The history is written once for the module (hour blocks, see tests.memstat.history), a memstat process
serves it (PROC_ROOT is an empty directory, so polls add nothing to it), and each test downloads over a
real socket, checks the content, and checks that the server's peak RSS (VmHWM) grew far less than what
it served.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.client import HTTPConnection
from pathlib import Path

import pytest

from stats_log_collector.memstat.csvstore import format_timestamp
from tests.helpers import free_port, http, wait_for
from tests.memstat.history import History, vm_name, write_archive, write_history

MiB = 1 << 20
MAX_GROWTH = 150 * MiB
VMS = 100
CHUNK = 1 << 20


@dataclass(frozen=True)
class Served:
    port: int
    pid: int
    live: History
    archive: History
    baseline_rss: int


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("large")
    data = root / "data"
    live = write_history(data, vms=VMS, target_bytes=1_000_000_000)
    archive = write_archive(data, vms=VMS, start=live.start - timedelta(hours=6), hours=6)
    (root / "proc").mkdir()
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    environ.update(
        DATA_DIR=str(data), HTTP_PORT=str(port), MEMSTAT_SOURCE="procfs", PROC_ROOT=str(root / "proc"),
        HOME=str(root), MAX_CSV_BYTES=str(2 << 30),
    )  # fmt: skip
    with open(root / "memstat.stderr", "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "stats_log_collector", "memstat"], env=environ, stderr=stderr
        )
    try:
        wait_for(lambda: http(port, "/readyz")[0] == 200, "memstat ready", timeout=60)
        # The dashboard's series are read from the history in the background at start (bounded memory
        # too, included in the baseline); the downloads are measured after, not competing with it.
        wait_for(lambda: b'"complete": true' in http(port, "/api/series?since=-1m")[1], "series", timeout=600)
        yield Served(port, process.pid, live, archive, status_kb(process.pid, "VmRSS"))
    finally:
        process.kill()
        process.wait()


def stream(served: Served, path: str, headers: dict[str, str] | None = None) -> Iterator[bytes]:
    """The body of a GET in chunks, never whole in memory (the test process must stay flat too)."""
    connection = HTTPConnection("127.0.0.1", served.port, timeout=300)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        assert response.status == 200, response.read()[:500]
        decoder = (
            zlib.decompressobj(16 + zlib.MAX_WBITS)
            if response.getheader("Content-Encoding") == "gzip"
            else None
        )
        if headers and "gzip" in headers.get("Accept-Encoding", ""):
            assert decoder is not None, "gzip asked, not given"
        while chunk := response.read(CHUNK):
            yield decoder.decompress(chunk) if decoder else chunk
        if decoder:
            yield decoder.flush()
    finally:
        connection.close()


def rows(chunks: Iterator[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        *lines, pending = (pending + chunk).split(b"\n")
        yield from lines
    assert pending == b"", "the body must end with a whole row"


def file_chunks(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def assert_flat(served: Served, what: str) -> None:
    growth = status_kb(served.pid, "VmHWM") - served.baseline_rss
    assert growth < MAX_GROWTH, f"{what}: peak RSS grew by {growth / MiB:.0f} MiB"


def without_header(chunks: Iterator[bytes]) -> Iterator[bytes]:
    first = True
    for chunk in chunks:
        if first:
            chunk, first = chunk[chunk.index(b"\n") + 1 :], False
        yield chunk


def test_the_whole_history_in_one_request(served: Served) -> None:
    expected, got = hashlib.sha256(), hashlib.sha256()
    expected_rows = got_rows = 0
    for index, path in enumerate((served.archive.path, served.live.path)):
        chunks = file_chunks(path)
        for chunk in without_header(chunks) if index else chunks:  # the download has one header
            expected.update(chunk)
            expected_rows += chunk.count(b"\n")
    for chunk in stream(served, "/"):
        got.update(chunk)
        got_rows += chunk.count(b"\n")
    assert got_rows == expected_rows == 1 + served.archive.rows + served.live.rows
    assert got.hexdigest() == expected.hexdigest()
    assert served.live.size > 1_000_000_000 - 10_000_000
    assert_flat(served, "GET /")


def test_a_vm_filter_reads_all_of_it(served: Served) -> None:
    wanted = {vm_name(7), vm_name(42)}
    found: dict[str, int] = dict.fromkeys(wanted, 0)
    first = last = b""
    for number, row in enumerate(rows(stream(served, f"/mem-stats.csv?vm={','.join(sorted(wanted))}"))):
        if number == 0:
            assert row.startswith(b"timestamp,namespace,vm,")
            continue
        vm = row.split(b",", 3)[2].decode()
        found[vm] += 1
        first, last = first or row, row
    polls = (served.archive.rows + served.live.rows) // VMS
    assert found == dict.fromkeys(wanted, polls)
    assert first.startswith(format_timestamp(served.archive.start).encode() + b",vms,vm-0007,")
    live_end = served.live.start + timedelta(hours=served.live.hours, seconds=-served.live.interval_s)
    assert last.startswith(format_timestamp(live_end).encode() + b",vms,vm-0042,")
    assert_flat(served, "GET /mem-stats.csv?vm=")


def test_since_and_vm_gzipped(served: Served) -> None:
    live_end = served.live.start + timedelta(hours=served.live.hours)
    since = live_end - timedelta(hours=2)
    stamp = format_timestamp(since)
    body = rows(stream(served, f"/mem-stats.csv?since={stamp}&vm={vm_name(3)}", {"Accept-Encoding": "gzip"}))
    assert next(body).startswith(b"timestamp,")
    times = [row.split(b",", 1)[0] for row in body]
    assert len(times) == 2 * 3600 // served.live.interval_s
    assert times[0] == stamp.encode() and times == sorted(times)
    assert_flat(served, "GET /mem-stats.csv?since=&vm= gzip")
