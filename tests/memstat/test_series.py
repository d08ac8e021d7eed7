"""The dashboard's in-memory series: exactly a brute-force downsample of the rows, fed live or from disk."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from stats_log_collector.memstat.command import seed_series
from stats_log_collector.memstat.csvstore import VM_LAYOUT, CsvStore
from stats_log_collector.memstat.downsample import Series, downsample
from stats_log_collector.memstat.sample import Sample, VmPod
from stats_log_collector.memstat.series import LEVELS as SERIES_LEVELS
from stats_log_collector.memstat.series import Query, SeriesCache, levels_for, series_name, totals_per_sample
from stats_log_collector.memstat.server import build_app
from stats_log_collector.memstat.state import LiveState
from stats_log_collector.memstat.vm_figures import VmMemory, vm_figures

T0 = datetime(2026, 11, 23, tzinfo=UTC)
LEVELS = ((10, 1000), (60, 1000), (600, 100))  # the finest two keep all of the data below


def polls(count: int, every: int, vms: int, seed: int = 1) -> list[list[Sample]]:
    """``count`` polls, ``every`` seconds apart, of ``vms`` VMs with two processes each (one with PSS)."""
    rng = random.Random(seed)
    result = []
    for index in range(count):
        at = T0 + timedelta(seconds=index * every)
        poll = []
        for vm in range(vms):
            if rng.random() < 0.05:
                continue  # a VM skipped for this sample
            namespace = "" if vm == 0 else f"ns{vm % 2}"  # a plain-host VM has no namespace
            base = (1000 + 10 * vm + rng.randrange(500)) << 20
            vm_pod = VmPod(namespace, f"vm{vm}", "pod", "n")
            poll.append(vm_pod.sample(at, "procfs", "qemu-kvm", 10, rss_bytes=base, pss_bytes=base // 2))
            # whole KiB, as kubelet and /proc report memory: what the 32-bit slots hold exactly
            poll.append(vm_pod.sample(at, "procfs", "virtqemud", 11, rss_bytes=rng.randrange(1 << 14) << 10))
        result.append(poll)
    return result


def brute_force(samples: list[Sample], figure: str, name_filter: str, until: float, answer: Series) -> Series:
    """The old per-request way: sum each VM's processes per sample time, then bucket maxima.

    The cache's buckets are aligned to its levels; ``until`` is aligned to every level here.
    """
    totals: dict[tuple[float, str], float] = {}
    for sample in samples:
        value = getattr(sample, figure)
        name = series_name(sample.namespace, sample.vm)
        if value is None or name_filter not in name or sample.timestamp.timestamp() >= until:
            continue
        key = (sample.timestamp.timestamp(), name)
        totals[key] = totals.get(key, 0.0) + value
    start, width = answer.times[0], answer.times[1] - answer.times[0]
    end = start + width * len(answer.times)
    return downsample(((t, name, v) for (t, name), v in totals.items()), start, end, len(answer.times))


@pytest.mark.parametrize(
    ("since_s", "until_s", "points", "figure", "name_filter", "width"),
    [
        (0, 7200, 720, "rss_bytes", "", 10),  # every sample
        (0, 7200, 100, "rss_bytes", "", 80),  # width 72 s rounded up to whole 10 s buckets
        (1234, 6000, 50, "pss_bytes", "", 100),  # an unaligned start
        (0, 7200, 10, "rss_bytes", "ns1/", 720),
        (3000, 3600, 1000, "rss_bytes", "vm0", 10),  # more points than samples: the finest level
    ],
)
def test_answers_equal_a_brute_force_downsample(
    since_s: int, until_s: int, points: int, figure: str, name_filter: str, width: int
) -> None:
    cache = SeriesCache(LEVELS)
    all_polls = polls(720, 10, 6)
    for poll in all_polls:
        cache.add_samples(poll)
    base = T0.timestamp()
    answer = cache.query(Query(base + since_s, base + until_s, points, figure, name_filter))
    assert answer.times[1] - answer.times[0] == width
    assert answer.times[0] <= base + since_s < answer.times[0] + width
    assert answer.times[-1] < base + until_s <= answer.times[-1] + width
    samples = [s for poll in all_polls for s in poll]
    expected = brute_force(samples, figure, name_filter, base + until_s, answer)
    assert answer == expected
    assert answer.values  # the case is not vacuous
    if name_filter:
        assert all(name_filter in name for name in answer.values)


def test_a_long_range_uses_a_coarse_level_and_memory_stays_bounded() -> None:
    cache = SeriesCache(((10, 60), (60, 100), (600, 100)))  # 10 min, 100 min, 1000 min
    for poll in polls(1800, 10, 3):  # 5 hours
        cache.add_samples(poll)
    base = T0.timestamp()
    end = base + 18000
    recent = cache.query(Query(end - 300, end, 30, "rss_bytes"))
    assert recent.times[1] - recent.times[0] == 10  # the last 5 minutes at full resolution
    whole = cache.query(Query(base, end, 30, "rss_bytes"))
    assert whole.times[1] - whole.times[0] == 600  # only the coarsest level still covers the start
    assert all(sum(v is not None for v in values) == 30 for values in whole.values.values())
    # The finer levels no longer hold the first minutes: the answer comes at the coarse level's resolution.
    early = cache.query(Query(base, base + 600, 60, "rss_bytes"))
    assert early.times == [base] and all(v[0] is not None for v in early.values.values())
    assert cache.memory_bytes() == 4 * (60 + 100 + 100) * 3 * 2  # 3 VMs x (rss, pss): no growth


def test_seeding_from_the_files_equals_feeding_live(tmp_path: Path) -> None:
    all_polls = polls(400, 10, 4, seed=7)
    live = SeriesCache(LEVELS)
    with CsvStore(tmp_path, max_csv_bytes=60_000) as store:  # several gzip archives and a live file
        for poll in all_polls:
            store.append(poll)
            live.add_samples(poll)
        assert len(store.archives()) >= 3
        seeded = SeriesCache(LEVELS)
        rows = seeded.seed(store.history(chunk_size=4096), store.fmt)
    assert rows == sum(len(poll) for poll in all_polls)
    assert seeded.seeded
    base = T0.timestamp()
    for figure in ("rss_bytes", "pss_bytes"):
        query = Query(base, base + 4000, 200, figure)
        assert seeded.query(query) == live.query(query)
        assert seeded.query(query).values
    # A poll both on disk and published live (the seed overlaps the first live polls) counts once.
    for poll in all_polls[-20:]:
        seeded.add_samples(poll)
    assert seeded.query(Query(base, base + 4000, 200, "rss_bytes")) == live.query(
        Query(base, base + 4000, 200, "rss_bytes")
    )


def test_overhead_and_headroom_seeded_from_vm_stats_equal_feeding_live(tmp_path: Path) -> None:
    all_polls = polls(300, 10, 4, seed=3)
    # vm0 is on a plain host; vm1 has no limit (no headroom), vm2 and vm3 no figure at all.
    memory = {("", "vm0"): VmMemory(900 << 20, None, 2000 << 20), ("ns1", "vm1"): VmMemory(1 << 30, 2 << 30)}
    live = SeriesCache(LEVELS)
    with CsvStore(tmp_path, max_csv_bytes=30_000, layout=VM_LAYOUT) as store:
        for poll in all_polls:
            figures = vm_figures(poll, memory)
            store.append(figures)
            live.add_figures(figures)
        assert store.archives()
        seeded = SeriesCache(LEVELS)
        rows = seeded.seed(store.history(chunk_size=4096), "vm-stats", complete=False)
    assert rows == sum(len({(s.namespace, s.vm) for s in poll}) for poll in all_polls)
    assert not seeded.seeded  # mem-stats.csv is still to be read
    base = T0.timestamp()
    for figure in ("overhead_bytes", "headroom_bytes"):
        query = Query(base, base + 3000, 150, figure)
        assert seeded.query(query) == live.query(query)
    assert set(live.query(Query(base, base + 3000, 150, "headroom_bytes")).values) == {"vm0"}
    assert set(live.query(Query(base, base + 3000, 150, "overhead_bytes")).values) == {"vm0", "ns1/vm1"}


def test_legacy_rows_and_bad_rows_are_read_or_skipped() -> None:
    chunks = [
        b"vmName,process,timestamp,RSS,RssAnon\n",
        b"pod-a,qemu-kvm,1700000000,1000,900\npod-a,virtqemud,1700000000,24,20\n",
        b"garbage\npod-b,qemu-kvm,1700000000,2",
        b"000,1\npod-a,qemu-kvm,1700000005,not-a-number,1\n",
    ]
    got = list(totals_per_sample(chunks, "legacy"))
    assert got == [
        (1700000000.0, {("rss_bytes", "pod-a"): 1024 * 1024.0, ("rss_bytes", "pod-b"): 2000 * 1024.0}, 3)
    ]


@pytest.fixture
async def server() -> AsyncIterator[tuple[TestServer, LiveState]]:
    state = LiveState()
    app = build_app(state, Path("/nonexistent"))
    test_server = TestServer(app)
    await test_server.start_server()
    yield test_server, state
    await test_server.close()


async def test_api_series_answers_from_the_published_polls(server: tuple[TestServer, LiveState]) -> None:
    test_server, state = server
    now = datetime.now(UTC).replace(microsecond=0)
    for minutes_ago in range(10, 0, -1):
        at = now - timedelta(minutes=minutes_ago)
        state.publish(
            [
                Sample(at, "ns", "vm1", "p1", "n", "procfs", "qemu-kvm", 1, 200 << 20),
                Sample(at, "ns", "vm1", "p1", "n", "procfs", "virtqemud", 2, 20 << 20),
                Sample(at, "ns", "vm2", "p2", "n", "procfs", "qemu-kvm", 3, (100 + minutes_ago) << 20),
            ],
            0.1,
            0,
            0,
        )
    state.series.seeded = True
    async with aiohttp.ClientSession() as session:

        async def get(query: str) -> tuple[int, bytes]:
            async with session.get(test_server.make_url(f"/api/series?{query}")) as response:
                return response.status, await response.read()

        status, body = await get("since=-15m&points=15")
        data = json.loads(body)
        assert status == 200 and data["label"] == "RSS" and data["complete"] is True
        assert data["times"][1] - data["times"][0] == 60 and len(data["times"]) in (15, 16)
        vm1 = [v for v in data["series"]["ns/vm1"] if v is not None]
        assert len(vm1) == 10 and set(vm1) == {220 << 20}  # both processes summed
        assert max(v for v in data["series"]["ns/vm2"] if v is not None) == 110 << 20
        _, body = await get("since=-15m&points=15&vm=vm2")
        assert list(json.loads(body)["series"]) == ["ns/vm2"]
        for bad in ("figure=cpu", "since=yesterday", "since=-1h&until=-2h", "points=many"):
            status, _ = await get(bad)
            assert status == 400, bad


async def test_a_damaged_archive_is_logged_and_the_series_start_from_what_was_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with CsvStore(tmp_path, max_csv_bytes=3_000) as store:
        for poll in polls(60, 10, 2):
            store.append(poll)
        first = store.archives()[0]
        first.write_bytes(first.read_bytes()[:200])  # a truncated gzip: reading it fails midway
        state = LiveState()
        with caplog.at_level(logging.ERROR):
            await seed_series(state, store)
    assert state.series.seeded
    assert any("reading mem-stats history" in r.getMessage() for r in caplog.records)


def test_levels_finer_than_the_poll_interval_are_not_kept() -> None:
    assert levels_for(1) == SERIES_LEVELS
    assert levels_for(5) == SERIES_LEVELS[1:]  # the 1 s level would hold what the 5 s one holds
    assert levels_for(60) == SERIES_LEVELS[2:]
    assert levels_for(86_400) == SERIES_LEVELS[-1:]  # the coarsest always
    slots = sum(count for _, count in levels_for(5))
    assert slots == 5450  # the figure docs/memstat.md gives (22 KB per VM and figure)


def test_slots_hold_whole_kib_exactly_up_to_16_gib_and_nearly_above() -> None:
    cache = SeriesCache(((10, 10),))
    exact = [(16 << 30) - 1024, 4096, -(123 << 10)]  # the largest KiB below 16 GiB, a page, a negative
    for index, value in enumerate(exact):
        cache.add_totals(index * 10.0, {("rss_bytes", f"vm{index}"): float(value)})
    cache.add_totals(30.0, {("rss_bytes", "big"): float((1 << 40) + 12345)})
    answer = cache.query(Query(0, 40, 4, "rss_bytes"))
    assert [max(v for v in answer.values[f"vm{i}"] if v is not None) for i in range(3)] == exact
    big = max(v for v in answer.values["big"] if v is not None)
    assert abs(big - ((1 << 40) + 12345)) / (1 << 40) < 1 / (1 << 23)
