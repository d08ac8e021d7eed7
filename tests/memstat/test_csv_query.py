"""Query strings of the CSV and series routes: any VM name can be selected, any time is an answer.

Over a real socket, on a rotated history (archives and the live file), so the filters run as in service.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from stats_log_collector.memstat.csv_routes import CsvRoutes
from stats_log_collector.memstat.csvstore import CsvStore
from stats_log_collector.memstat.sample import VmPod
from stats_log_collector.memstat.server import build_app
from stats_log_collector.memstat.state import LiveState

T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)
# Names QEMU's -name allows (the procfs source on a plain host): CSV must quote them.
NAMES = ("a", "b", "a,b", 'say "hi"', '"', ",", "plain")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[TestServer]:
    store = CsvStore(tmp_path / "data", max_csv_bytes=2_000, max_archive_bytes=10**9)
    for minute in range(10):
        at = T0 + timedelta(minutes=minute)
        store.append(
            [VmPod("", name, "").sample(at, "procfs", "qemu-kvm", 7, rss_bytes=minute) for name in NAMES]
        )
    assert store.archives()
    (tmp_path / "logs").mkdir()
    test_server = TestServer(build_app(LiveState(), tmp_path / "logs", CsvRoutes(store).add_routes))
    await test_server.start_server()
    yield test_server
    await test_server.close()
    store.close()


async def get(server: TestServer, path: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(server.make_url(path)) as response:
        return response.status, await response.read()


def vms_in(body: bytes) -> list[str]:
    return sorted({row["vm"] for row in csv.DictReader(io.StringIO(body.decode()))})


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["a,b"], ["a", "a,b", "b"]),  # one value with commas: the older list form, and the whole name
        (["a,b", "plain"], ["a,b", "plain"]),  # repeated: each value exactly one name
        (['say "hi"', '"'], ['"', 'say "hi"']),
        ([",", "nobody", 'say "hi', "hi"], [","]),  # no prefix, no part of a quoted cell
    ],
)
async def test_vm_selects_any_name_exactly(
    server: TestServer, values: list[str], expected: list[str]
) -> None:
    status, body = await get(server, "/mem-stats.csv?" + urlencode([("vm", value) for value in values]))
    assert status == 200 and vms_in(body) == expected
    assert len(body.splitlines()) == 1 + 10 * len(expected)


OUT_OF_RANGE = (
    "since=-9999999d",
    "since=-99999999999999999999999999w",
    "until=9999-12-31T23:59:59-01:00",
    "since=0001-01-01T00:00:00%2B01:00",
    "since=-1h&until=9999-12-31T23:59:59-23:59",
)


@pytest.mark.parametrize("route", ["/mem-stats.csv", "/api/series"])
async def test_times_beyond_the_calendar_are_a_400_with_a_reason(server: TestServer, route: str) -> None:
    for query in OUT_OF_RANGE:
        status, body = await get(server, f"{route}?{query}")
        assert status == 400 and body.startswith(b"time out of range: ") and body.count(b"\n") == 1, query
    # Its very edges are times like any other.
    status, body = await get(server, f"{route}?since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59Z")
    assert status == 200
    assert vms_in(body) == sorted(NAMES) if route.endswith(".csv") else body.startswith(b'{"figure"')
