"""Writing a large, realistic ``mem-stats.csv`` fast, for tests and benchmarks of memstat's HTTP side.

A week of 100 VMs at 5 s is 12 million rows (1.2 GB): formatting each row in Python would take longer
than the test that reads them. The rows of one hour are formatted once, with the hour's prefix of the
timestamp (``2026-11-23T10:``) as a placeholder, and every hour is that block with the prefix replaced
(one ``bytes.replace``, at memory speed). Figures vary from VM to VM and sample to sample, so
checksums, filters and per-VM series are meaningful; they repeat from hour to hour.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stats_log_collector.memstat.csvstore import CSV_NAME, archive_name, encode_rows, header_line
from stats_log_collector.memstat.sample import COLUMNS

PLACEHOLDER = b"@@@@-@@-@@T@@:"


@dataclasses.dataclass(frozen=True)
class History:
    path: Path
    start: datetime  # the first row's time (on the hour)
    hours: int
    interval_s: int
    vms: int
    rows: int
    size: int


def vm_name(index: int) -> str:
    return f"vm-{index:04d}"


def hour_block(vms: int, interval_s: int, seed: int = 0) -> bytes:
    """One hour of polls of ``vms`` VMs (one ``qemu-kvm`` row each), timestamps with PLACEHOLDER."""
    if 3600 % interval_s:
        raise ValueError("interval_s must divide an hour")
    rng = random.Random(seed)
    rows = []
    for tick in range(3600 // interval_s):
        seconds = tick * interval_s
        stamp = f"{PLACEHOLDER.decode()}{seconds // 60:02d}:{seconds % 60:02d}.000Z"
        for vm in range(vms):
            # A slow wave per VM, apart from the others, with a little noise: readable on a chart.
            wave = 48 * math.sin(2 * math.pi * (tick / (3600 // interval_s) + vm / 7))
            rss = int(512 + 24 * (vm % 16) + wave + rng.randrange(6)) << 20
            rows.append(
                [
                    stamp,
                    "vms",
                    vm_name(vm),
                    f"virt-launcher-{vm_name(vm)}-x7k2p",
                    f"node-{vm % 50:02d}",
                    "procfs",
                    "qemu-kvm",
                    str(1000 + vm),
                    str(rss),
                    str(rss - (8 << 20)),
                    str(8 << 20),
                    "0",
                    str(rss - (2 << 20)),
                    str(rss + (16 << 20)),
                    str(rss * 3),
                    "0",
                    "",
                ]
            )
    assert len(rows[0]) == len(COLUMNS)
    return encode_rows(rows)


def write_history(
    data_dir: Path,
    *,
    vms: int,
    hours: int | None = None,
    target_bytes: int | None = None,
    interval_s: int = 5,
    start: datetime | None = None,
) -> History:
    """A standard ``mem-stats.csv`` in ``data_dir``: ``hours`` of samples, or enough for ``target_bytes``.

    ``start`` defaults to that many hours before now, on the hour, so the history ends about now.
    """
    block = hour_block(vms, interval_s)
    if hours is None:
        if target_bytes is None:
            raise ValueError("give hours or target_bytes")
        hours = max(1, round(target_bytes / len(block)))
    if start is None:
        start = (datetime.now(UTC) - timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / CSV_NAME
    size = 0
    with open(path, "wb") as f:
        size += f.write(header_line("standard"))
        for hour in range(hours):
            prefix = (start + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:").encode()
            size += f.write(block.replace(PLACEHOLDER, prefix))
    rows_per_hour = vms * (3600 // interval_s)
    return History(path, start, hours, interval_s, vms, rows_per_hour * hours, size)


def write_archive(data_dir: Path, *, vms: int, start: datetime, hours: int, interval_s: int = 5) -> History:
    """An archive named as memstat names them (``mem-stats-<first>-<last>.csv.gz``): ``hours`` of rows."""
    block = hour_block(vms, interval_s, seed=1)
    last = start + timedelta(hours=hours) - timedelta(seconds=interval_s)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / archive_name(start, last)
    size = 0
    with gzip.open(path, "wb", compresslevel=1) as f:
        size += f.write(header_line("standard"))
        for hour in range(hours):
            prefix = (start + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:").encode()
            size += f.write(block.replace(PLACEHOLDER, prefix))
    return History(path, start, hours, interval_s, vms, vms * (3600 // interval_s) * hours, size)
