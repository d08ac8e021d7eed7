"""The dashboard's /api/series on a week of 100 VMs: the in-memory series next to a rescan per request.

Why: the first /api/series read the whole history for every request (filter the rows of the range, sum
each VM's processes per sample, keep bucket maxima). With 100 VMs sampled every 5 s a week is 12 million
rows: one chart took minutes. Now the series are kept in memory at fixed resolutions, fed by each poll
and read once from the history at start (memstat.series). Both run here on the same generated history
(tests.memstat.history: one row per VM per sample, as the kubelet source writes).

Reported: the one-off read of the history at start (rows/s) and the memory the series hold; then per
request, for the last hour, day and week (median of --repeat; the rescan once, for the week only):
wall and CPU time, including the JSON the server sends.

    .venv/bin/python bench/bench_series.py [--vms 100] [--days 7] [--points 1200] [--repeat 20]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from stats_log_collector.memstat.csv_routes import filter_chunks, row_filter
from stats_log_collector.memstat.csvstore import CsvStore
from stats_log_collector.memstat.downsample import downsample
from stats_log_collector.memstat.series import Query, SeriesCache, series_name

# The history generator lives with the tests (tests/memstat/history.py); the repository root makes it
# importable when this script is run by path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.memstat.history import History, write_history


def rescan(store: CsvStore, since: float, until: float, points: int) -> str:
    """The previous /api/series: the history filtered to the range, row by row, then downsampled."""
    keep = row_filter(store.fmt, None, datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(until, UTC))
    assert keep is not None
    totals: dict[tuple[float, str], float] = {}
    chunks = iter(filter_chunks(store.history(), keep))
    next(chunks)
    for chunk in chunks:
        for line in chunk.split(b"\n"):
            fields = line.decode(errors="replace").split(",")
            if len(fields) < 9 or not fields[8]:
                continue
            moment = datetime.fromisoformat(fields[0].replace("Z", "+00:00")).timestamp()
            key = (moment, series_name(fields[1], fields[2]))
            totals[key] = totals.get(key, 0.0) + float(fields[8])
    result = downsample(((t, name, v) for (t, name), v in totals.items()), since, until, points)
    return json.dumps({"times": result.times, "series": result.values})


def from_memory(cache: SeriesCache, since: float, until: float, points: int) -> str:
    result = cache.query(Query(since, until, points))
    return json.dumps({"times": result.times, "series": result.values})


def timed(work: Callable[[], str], repeat: int) -> tuple[float, float, int]:
    """Median wall s, median CPU s, response bytes."""
    walls, cpus, size = [], [], 0
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        size = len(work())
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), size


def rss_mib() -> float:
    """This process's resident memory now (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


RANGES = (("last hour", 3600), ("last day", 86400), ("last week", 7 * 86400))


def run(history: History, store: CsvStore, points: int, repeat: int, with_rescan: bool) -> None:
    end = history.start.timestamp() + history.hours * 3600
    cache = SeriesCache()
    before = rss_mib()
    wall, cpu = time.perf_counter(), time.process_time()
    rows = cache.seed(store.history(), store.fmt, end)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"read once at start: {rows:,} rows in {wall:.1f} s ({cpu:.1f} s CPU, {rows / wall:,.0f} rows/s)")
    print(f"series hold {cache.memory_bytes() / 2**20:.1f} MiB (process RSS +{rss_mib() - before:.0f} MiB)")
    print(f"\n{f'request (points={points})':<34} {'wall ms':>10} {'CPU ms':>10} {'JSON KB':>8}")
    rows_out: list[tuple[str, Callable[[], str], int]] = []
    for label, span in RANGES:
        since = end - min(span, history.hours * 3600)
        work = functools.partial(from_memory, cache, since, end, points)
        rows_out.append((f"in memory, {label}", work, repeat))
    if with_rescan:
        since = end - history.hours * 3600
        work = functools.partial(rescan, store, since, end, points)
        rows_out.append(("rescan per request, whole history", work, 1))
    for label, work, times in rows_out:
        w, c, size = timed(work, times)
        print(f"{label:<34} {w * 1000:>10.1f} {c * 1000:>10.1f} {size / 1000:>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--points", type=int, default=1200)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--skip-rescan", action="store_true", help="leave out the (slow) rescan")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        history = write_history(Path(tmp), vms=args.vms, hours=args.days * 24)
        print(
            f"history: {history.rows:,} rows, {history.size / 1e9:.2f} GB, {args.vms} VMs, {args.days} days"
            f" at {history.interval_s} s (written in {time.perf_counter() - began:.1f} s)"
        )
        with CsvStore(Path(tmp)) as store:
            run(history, store, args.points, args.repeat, not args.skip_rescan)


if __name__ == "__main__":
    main()
