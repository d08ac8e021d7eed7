"""``GET /`` and ``/mem-stats.csv`` over a real socket: whole history, filters, Range, ETag, gzip."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from stats_log_collector.memstat.csv_routes import (
    CsvRoutes,
    candidate_rows,
    filter_chunks,
    parse_when,
    row_filter,
)
from stats_log_collector.memstat.csvstore import CsvStore
from stats_log_collector.memstat.sample import Sample

T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)


def samples(minute: int) -> list[Sample]:
    at = T0 + timedelta(minutes=minute)
    return [
        Sample(
            at,
            "default",
            vm,
            f"virt-launcher-{vm}-x",
            "node1",
            "procfs",
            "qemu-kvm",
            40 + i,
            (100 + minute) << 20,
        )
        for i, vm in enumerate(("vm1", "vm2"))
    ]


async def serve(store: CsvStore) -> TestServer:
    app = web.Application()
    CsvRoutes(store).add_routes(app)
    server = TestServer(app)
    await server.start_server()
    return server


@pytest.fixture
async def live_only(tmp_path: Path) -> AsyncIterator[TestServer]:
    store = CsvStore(tmp_path)
    for minute in range(10):
        store.append(samples(minute))
    server = await serve(store)
    yield server
    await server.close()
    store.close()


@pytest.fixture
async def rotated(tmp_path: Path) -> AsyncIterator[TestServer]:
    store = CsvStore(tmp_path, max_csv_bytes=600, max_archive_bytes=10**9)
    for minute in range(40):
        store.append(samples(minute))
    assert store.archives(), "the test needs archives"
    server = await serve(store)
    yield server
    await server.close()
    store.close()


async def get(server: TestServer, path: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
    headers = {"Accept-Encoding": "identity", **headers}  # aiohttp asks for gzip by default
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(server.make_url(path), headers=headers) as response,
    ):
        return response.status, CIMultiDict(response.headers), await response.read()


def rows(body: bytes) -> list[list[str]]:
    return [line.split(",") for line in body.decode().splitlines()]


async def test_root_and_named_path_serve_the_csv(live_only: TestServer) -> None:
    for path in ("/", "/mem-stats.csv"):
        status, headers, body = await get(live_only, path)
        assert status == 200 and headers["Content-Type"].startswith("text/csv")
        table = rows(body)
        assert table[0][:3] == ["timestamp", "namespace", "vm"] and len(table) == 1 + 20


async def test_range_and_etag_on_the_live_file(live_only: TestServer) -> None:
    _, headers, whole = await get(live_only, "/mem-stats.csv")
    status, _, part = await get(live_only, "/mem-stats.csv", Range="bytes=0-8")
    assert status == 206 and part == whole[:9]
    status, _, _ = await get(live_only, "/mem-stats.csv", **{"If-None-Match": headers["ETag"]})
    assert status == 304


async def test_whole_history_in_one_request_with_one_header(rotated: TestServer) -> None:
    status, headers, body = await get(rotated, "/mem-stats.csv")
    table = rows(body)
    assert status == 200 and [row[0] for row in table].count("timestamp") == 1
    assert len(table) == 1 + 80
    times = [row[0] for row in table[1:]]
    assert times == sorted(times)  # archives oldest first, then the live file
    status, _, _ = await get(rotated, "/mem-stats.csv", **{"If-None-Match": headers["ETag"]})
    assert status == 304


async def test_gzip_on_request(rotated: TestServer) -> None:
    _, _, plain = await get(rotated, "/mem-stats.csv")
    status, headers, body = await get(rotated, "/mem-stats.csv", **{"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == plain


async def test_filters(rotated: TestServer) -> None:
    _, _, body = await get(
        rotated, "/mem-stats.csv?vm=vm2&since=2026-11-23T10:05:00Z&until=2026-11-23T10:08:00Z"
    )
    table = rows(body)
    assert table[0][0] == "timestamp"
    assert [(row[0], row[2]) for row in table[1:]] == [
        (f"2026-11-23T10:0{m}:00.000Z", "vm2") for m in (5, 6, 7)
    ]
    status, _, body = await get(rotated, "/mem-stats.csv?since=yesterday")
    assert status == 400 and b"not a time" in body


def test_parse_when() -> None:
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert parse_when("-1h", now) == datetime(2026, 11, 23, 11, tzinfo=UTC)
    assert parse_when("-90s", now) == now - timedelta(seconds=90)
    assert parse_when("2026-11-23T10:00:00Z", now) == datetime(2026, 11, 23, 10, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_when("soon", now)


def test_filter_handles_rows_cut_across_chunks() -> None:
    keep = row_filter("standard", {"b"}, None, None)
    assert keep is not None
    data = [
        b"timestamp,namespace,vm\n",
        b"2026-11-23T10:00:00.000Z,ns,a\n2026-11-23T10:00:00.000Z,n",
        b"s,b\n",
    ]
    assert b"".join(filter_chunks(data, keep)) == b"timestamp,namespace,vm\n2026-11-23T10:00:00.000Z,ns,b\n"


@pytest.mark.parametrize("fmt", ["standard", "legacy"])
def test_the_vm_regex_finds_exactly_the_rows_the_predicate_keeps(fmt: str) -> None:
    if fmt == "standard":
        rows = [f"2026-11-23T10:00:0{i}.000Z,ns,{vm},pod-{vm},n,procfs,qemu-kvm,1,{i}" for i, vm in
                enumerate(["b", "bb", "a.b", "b", "x"])]  # fmt: skip
        rows.append("2026-11-23T10:00:09.000Z,b,x,b,b,procfs,b,1,2")  # "b" everywhere but the vm column
    else:
        rows = [f"{vm},qemu-kvm,{100 + i},1,2" for i, vm in enumerate(["b", "bb", "a.b", "b", "x"])]
        rows.append("x,b,150,1,2")
    body = ("\n".join(rows) + "\n").encode()
    for vms in ({"b"}, {"a.b", "x"}):
        keep = row_filter(fmt, vms, None, None)
        assert keep is not None
        cuts = [body[:37], body[37:90], body[90:]]  # rows cut anywhere
        fast = b"".join(filter_chunks([b"header\n", *cuts], keep, candidate_rows(fmt, vms)))
        slow = b"".join(filter_chunks([b"header\n", *cuts], keep))
        assert fast == slow and fast.count(b"\n") == 1 + sum(keep(row.encode()) for row in rows)


def test_legacy_filter_by_pod_and_unix_time() -> None:
    keep = row_filter("legacy", {"virt-launcher-vm1-x"}, datetime.fromtimestamp(100, UTC), None)
    assert keep is not None
    assert keep(b"virt-launcher-vm1-x,qemu-kvm,150,1,2") and not keep(b"virt-launcher-vm1-x,qemu-kvm,50,1,2")
    assert not keep(b"virt-launcher-vm2-x,qemu-kvm,150,1,2")
