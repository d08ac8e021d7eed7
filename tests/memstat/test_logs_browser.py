"""``/logs/``: listing, downloads, folder archives, and nothing outside LOGS_DIR, over real sockets."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from stats_log_collector.memstat.logs_browser import LogsBrowser, OutsideRoot, resolve_inside


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "logs"
    vm = root / "default" / "vm1"
    vm.mkdir(parents=True)
    (vm / "virt-launcher-vm1-abcde.compute.20261123T100000Z.log.gz").write_bytes(b"\x1f\x8bcompressed")
    (vm / "virt-handler-x.20261123T100000Z.log.gz").write_bytes(b"handler lines" * 1000)
    (root / "default" / "vm2").mkdir()
    (tmp_path / "secret").write_text("not for you")
    (root / "default" / "escape").symlink_to(tmp_path / "secret")
    (vm / "inner-link").symlink_to(vm / "virt-handler-x.20261123T100000Z.log.gz")
    return root


@pytest.fixture
async def server(tree: Path) -> AsyncIterator[TestServer]:
    app = web.Application()
    LogsBrowser(tree).add_routes(app)
    test_server = TestServer(app)
    await test_server.start_server()
    try:
        yield test_server
    finally:
        await test_server.close()


async def get(server: TestServer, path: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as session:
        url = server.make_url("/").with_path(path, encoded=True)
        async with session.get(url, headers=headers, allow_redirects=False) as response:
            return response.status, CIMultiDict(response.headers), await response.read()


async def raw_get(server: TestServer, path: str) -> bytes:
    """A request line sent as is: clients normalise ``..`` away, an attacker does not."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    answer = await reader.read()
    writer.close()
    return answer


async def test_listing_html_and_json(server: TestServer) -> None:
    status, headers, body = await get(server, "/logs/default/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'href="vm1/"' in body and b'href="vm1.tar.gz"' in body and b"escape" not in body
    status, _, body = await get(server, "/logs/default/vm1/?format=json")
    names = {entry["name"] for entry in json.loads(body)}
    assert names == {
        "virt-launcher-vm1-abcde.compute.20261123T100000Z.log.gz",
        "virt-handler-x.20261123T100000Z.log.gz",
    }


async def test_directory_without_slash_redirects(server: TestServer) -> None:
    status, headers, _ = await get(server, "/logs/default")
    assert status == 301 and headers["Location"] == "/logs/default/"


async def test_file_download_with_range_and_etag(server: TestServer, tree: Path) -> None:
    path = "/logs/default/vm1/virt-handler-x.20261123T100000Z.log.gz"
    status, headers, body = await get(server, path)
    assert status == 200 and body == b"handler lines" * 1000
    status, _, body = await get(server, path, Range="bytes=0-12")
    assert status == 206 and body == b"handler lines"
    status, _, body = await get(server, path, **{"If-None-Match": headers["ETag"]})
    assert status == 304 and body == b""


async def test_folder_as_tar_gz(server: TestServer, tree: Path) -> None:
    status, headers, body = await get(server, "/logs/default/vm1.tar.gz")
    assert status == 200 and headers["Content-Type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        members = {member.name: archive.extractfile(member).read() for member in archive.getmembers()}  # type: ignore[union-attr]
    assert members == {
        "vm1/virt-launcher-vm1-abcde.compute.20261123T100000Z.log.gz": b"\x1f\x8bcompressed",
        "vm1/virt-handler-x.20261123T100000Z.log.gz": b"handler lines" * 1000,
    }  # the symlink inside is not archived


@pytest.mark.parametrize(
    "path",
    [
        "/logs/../secret",
        "/logs/%2e%2e/secret",
        "/logs/default/%2e%2e/%2e%2e/secret",
        "/logs/default/..%2f..%2fsecret",
        "/logs/default/escape",
        "/logs/default/vm1/inner-link",
        "/logs/default/escape.tar.gz",
        "/logs//etc/passwd",
        "/logs/%00",
    ],
)
async def test_nothing_outside_the_logs_directory(server: TestServer, path: str) -> None:
    answer = await raw_get(server, path)
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 403, 404), answer[:200]
    assert b"not for you" not in answer and b"root:" not in answer


def test_resolve_inside_refuses_parents_and_links(tree: Path) -> None:
    assert resolve_inside(tree, "default/vm1") == tree / "default" / "vm1"
    for bad in ("..", "default/../../secret", "default/escape"):
        with pytest.raises(OutsideRoot):
            resolve_inside(tree, bad)
    with pytest.raises(FileNotFoundError):
        resolve_inside(tree, "default/nope")
