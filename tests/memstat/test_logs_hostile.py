"""``/logs/`` against what really happens on the volume and in requests: files removed or cut while a
folder is archived, hidden journal folders, names that break headers, file paths ending in ``/``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import socket
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from stats_log_collector.memstat.logs_browser import LogsBrowser

MiB = 1 << 20


@pytest.fixture
async def serve() -> AsyncIterator[type[TestServer]]:
    servers: list[TestServer] = []

    async def start(root: Path) -> TestServer:
        app = web.Application()
        LogsBrowser(root).add_routes(app)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in servers:
        await server.close()


async def get(server: TestServer, path: str) -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as session:
        url = server.make_url("/").with_path(path, encoded=True)
        async with session.get(url, allow_redirects=False) as response:
            return response.status, CIMultiDict(response.headers), await response.read()


def unchunk(body: bytes) -> bytes:
    """An HTTP/1.1 chunked body decoded; AssertionError if it is cut before its last chunk."""
    out = bytearray()
    while True:
        size_line, _, body = body.partition(b"\r\n")
        assert size_line, "the body was cut short"
        size = int(size_line, 16)
        if size == 0:
            return bytes(out)
        assert len(body) >= size + 2, "the body was cut short"
        out += body[:size]
        body = body[size + 2 :]


async def test_files_removed_and_cut_while_their_folder_is_downloaded(
    serve, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "logs" / "vm1"
    folder.mkdir(parents=True)
    big = os.urandom(24 * MiB)  # incompressible, far more than the socket buffers hold
    (folder / "a-current.log.gz").write_bytes(big)
    small = {f"b-{i:03d}.log.gz": os.urandom(64 << 10) for i in range(40)}
    for name, data in small.items():
        (folder / name).write_bytes(data)
    server = await serve(tmp_path / "logs")
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", server.port))
    await loop.sock_sendall(sock, b"GET /logs/vm1.tar.gz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = bytearray(await loop.sock_recv(sock, 4096))
    await asyncio.sleep(0.5)  # the archive is now stuck inside the first file: the client reads nothing
    # What logs-collector's renames and retention do meanwhile: the file being read is cut, later
    # files are removed.
    os.truncate(folder / "a-current.log.gz", 0)
    removed = sorted(small)[::2]
    for name in removed:
        (folder / name).unlink()
    with caplog.at_level(logging.INFO):
        while data := await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 20):
            answer += data
    sock.close()
    head, _, body = bytes(answer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    with tarfile.open(fileobj=io.BytesIO(unchunk(body)), mode="r:gz") as archive:
        members = {member.name: archive.extractfile(member).read() for member in archive}  # type: ignore[union-attr]
    current = members.pop("vm1/a-current.log.gz")
    sent = len(current.rstrip(b"\0"))
    assert len(current) == len(big) and 0 < sent < len(big)  # cut while read: padded to its header's size
    assert current[:sent] == big[:sent]
    assert members == {f"vm1/{name}": data for name, data in small.items() if name not in removed}
    lines = [r for r in caplog.records if r.name.endswith("logs_browser")]
    assert [r.getMessage() for r in lines] == ["files changed while their folder was archived"]
    assert (lines[0].left_out, lines[0].padded_with_zeros) == (len(removed), 1)  # type: ignore[attr-defined]


async def test_hidden_entries_are_neither_listed_served_nor_archived(serve, tmp_path: Path) -> None:
    root = tmp_path / "logs"
    (root / ".logs-collector").mkdir(parents=True)
    (root / ".logs-collector" / "journal").write_text("intent")
    (root / "vm1").mkdir()
    (root / "vm1" / "a.log").write_text("visible")
    (root / "vm1" / ".a.log.tmp").write_text("half written")
    server = await serve(root)
    for path in ("/logs/", "/logs/?format=json", "/logs/vm1/", "/logs/vm1/?format=json"):
        status, _, body = await get(server, path)
        assert status == 200 and (b"a.log" if "vm1" in path else b"vm1") in body
        assert b".logs-collector" not in body and b".a.log.tmp" not in body
    for path in ("/logs/.logs-collector/", "/logs/.logs-collector/journal", "/logs/.logs-collector.tar.gz",
                 "/logs/vm1/.a.log.tmp"):  # fmt: skip
        assert (await get(server, path))[0] == 404, path
    for path, expected in (("/logs/.tar.gz", ["logs/vm1/a.log"]), ("/logs/vm1.tar.gz", ["vm1/a.log"])):
        status, _, body = await get(server, path)
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
            assert status == 200 and archive.getnames() == expected


async def test_names_that_would_break_the_header_are_encoded(serve, tmp_path: Path) -> None:
    root = tmp_path / "logs"
    (root / 'vm"1').mkdir(parents=True)
    (root / 'vm"1' / 'the "log"\r\nX-Injected: 1.txt').write_text("content")
    (root / "vm-é").mkdir()
    server = await serve(root)
    status, headers, body = await get(server, "/logs/vm%221/the%20%22log%22%0D%0AX-Injected%3A%201.txt")
    assert status == 200 and body == b"content" and "X-Injected" not in headers
    assert headers["Content-Disposition"] == (
        'inline; filename="the _log___X-Injected: 1.txt"; '
        "filename*=UTF-8''the%20%22log%22%0D%0AX-Injected%3A%201.txt"
    )
    status, headers, _ = await get(server, "/logs/vm%221.tar.gz")
    assert status == 200
    assert (
        headers["Content-Disposition"]
        == "attachment; filename=\"vm_1.tar.gz\"; filename*=UTF-8''vm%221.tar.gz"
    )
    status, headers, _ = await get(server, "/logs/vm-%C3%A9.tar.gz")
    assert status == 200
    assert (
        headers["Content-Disposition"]
        == "attachment; filename=\"vm-_.tar.gz\"; filename*=UTF-8''vm-%C3%A9.tar.gz"
    )


async def test_a_file_path_ending_in_a_slash_is_not_found(serve, tmp_path: Path) -> None:
    (tmp_path / "logs" / "vm1").mkdir(parents=True)
    (tmp_path / "logs" / "vm1" / "a.log").write_text("content")
    server = await serve(tmp_path / "logs")
    assert (await get(server, "/logs/vm1/a.log"))[0] == 200
    assert (await get(server, "/logs/vm1/a.log/"))[0] == 404
    assert (await get(server, "/logs/vm1/a.log//"))[0] == 404
