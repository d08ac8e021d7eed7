"""Slow and stalled downloads against the real memstat process: polls keep their grid, others answer.

Seven clients reading a folder archive at 2 KB/s used to hold every thread of the event loop's default
executor, which the procfs source polls on: sampling stopped while /healthz said ok. Long transfers now
have their own bounded pool; the one beyond its limit is answered 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from stats_log_collector.memstat.csv_routes import CsvRoutes
from stats_log_collector.memstat.csvstore import CsvStore
from stats_log_collector.memstat.server import build_app
from stats_log_collector.memstat.state import LiveState
from stats_log_collector.memstat.transfers import MAX_TRANSFERS, TransferPool
from tests.helpers import http, wait_for
from tests.memstat.history import write_archive, write_history

RATE = 2048  # bytes per second each slow client reads


class SlowClient:
    """A raw socket that asks for ``path`` and then reads RATE bytes a second, from a small buffer."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = self.sock.recv(1024)
            if not data:
                break
            head += data
        self.head = head.split(b"\r\n\r\n")[0].decode("latin-1")
        self.status = int(self.head.split()[1]) if self.head else 0
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(RATE)
            except OSError:
                return
            if not data:
                return
            self.received += len(data)
            self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def poll_times(csv_path: Path) -> set[str]:
    """The distinct sample times in the CSV: one per poll that wrote rows."""
    rows = csv.DictReader(io.StringIO(csv_path.read_text()))
    return {row["timestamp"] for row in rows}


@pytest.fixture
def served(memstat, fake_vm: int, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """memstat on this host's /proc (the fake VM gives a row per poll) with a 12 MB folder of logs."""
    folder = tmp_path / "logs" / "default" / "vm1"
    folder.mkdir(parents=True)
    (folder / "big.log.gz").write_bytes(os.urandom(12 << 20))  # incompressible: more than socket buffers
    (folder / "small.log").write_bytes(b"a line\n" * 100)
    _, port = memstat(MEMSTAT_SOURCE="procfs", LOGS_DIR=str(tmp_path / "logs"))
    wait_for(lambda: http(port, "/readyz")[0] == 200, "ready after the first poll")
    yield port, tmp_path / "data" / "mem-stats.csv"


def test_slow_archive_downloads_do_not_stop_polls(served: tuple[int, Path], tmp_path: Path) -> None:
    port, csv_path = served
    clients = [SlowClient(port, "/logs/default/vm1.tar.gz") for _ in range(MAX_TRANSFERS)]
    try:
        assert [client.status for client in clients] == [200] * MAX_TRANSFERS
        wait_for(lambda: all(client.received > 0 for client in clients), "every slow client reading")
        before = poll_times(csv_path)
        # Polls run every second: five more sample times while the slow clients hold their transfers.
        wait_for(lambda: len(poll_times(csv_path) - before) >= 5, "polls going on", timeout=15)
        extra = SlowClient(port, "/logs/default/vm1.tar.gz")
        extra.close()
        assert extra.status == 503 and "Retry-After: " in extra.head
        status, body = http(port, "/mem-stats.csv?since=-1h")  # a long transfer too: no place left
        assert status == 503 and b"retry" in body
        assert http(port, "/healthz")[0] == 200 and http(port, "/readyz")[0] == 200
        assert http(port, "/logs/default/vm1/small.log") == (200, b"a line\n" * 100)
        assert http(port, "/mem-stats.csv")[1].startswith(b"timestamp,")  # the live file, served as is
        assert all(client.received > 0 for client in clients)
        clients.pop().close()
        # Its place is free once the server notices the closed socket (its next write fails).
        wait_for(lambda: http(port, "/mem-stats.csv?since=-1h")[0] == 200, "a place for a filtered CSV")
        status, body = http(port, "/mem-stats.csv?since=-1h")
        assert status == 200 and len(body.splitlines()) > 5
    finally:
        for client in clients:
            client.close()
    assert b"Traceback" not in (tmp_path / "memstat.stderr").read_bytes()


async def raw_get(port: int, path: str) -> tuple[socket.socket, bytes]:
    """A request from a socket with a small receive buffer; returns it with the first bytes received."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    return sock, await loop.sock_recv(sock, 1024)


async def read_to_end(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    received = bytearray()
    try:
        while data := await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 10):
            received += data
    except ConnectionResetError:
        pass
    return bytes(received)


@pytest.mark.parametrize("path", ["/logs/vm1.tar.gz", "/mem-stats.csv"])
async def test_a_stalled_client_is_dropped_and_frees_its_thread(
    tmp_path: Path, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "logs" / "vm1").mkdir(parents=True)
    (tmp_path / "logs" / "vm1" / "big.log.gz").write_bytes(os.urandom(12 << 20))
    history = write_history(tmp_path / "data", vms=20, target_bytes=12 << 20)
    write_archive(tmp_path / "data", vms=20, start=history.start - timedelta(hours=1), hours=1)
    store = CsvStore(tmp_path / "data")
    pool = TransferPool(limit=2, write_timeout_s=1.0)
    app = build_app(LiveState(), tmp_path / "logs", CsvRoutes(store).add_routes, pool)
    server = TestServer(app)
    await server.start_server()
    try:
        assert server.port is not None
        sock, head = await raw_get(server.port, path)
        assert head.startswith(b"HTTP/1.1 200")
        with caplog.at_level(logging.INFO):
            for _ in range(300):  # the client reads nothing; bounded wait for the server to give up
                if pool.active == 0:
                    break
                await asyncio.sleep(0.1)
            assert pool.active == 0
        rest = await read_to_end(sock)
        sock.close()
        assert not rest.endswith(b"0\r\n\r\n")  # cut: never the end of a chunked body
        cut = [r for r in caplog.records if r.getMessage() == "download cut short"]
        assert len(cut) == 1 and "took nothing for 1 s" in cut[0].reason  # type: ignore[attr-defined]
        # Its thread is free: a client that reads gets the whole answer.
        sock, head = await raw_get(server.port, path.replace(".csv", ".csv?vm=vm-0001"))
        assert head.startswith(b"HTTP/1.1 200")
        assert (await read_to_end(sock)).endswith(b"0\r\n\r\n")
        sock.close()
    finally:
        await server.close()
        store.close()
