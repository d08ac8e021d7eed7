"""mem-stats.csv: row formats, header once, torn tails, foreign headers, rotation, history, kill -9."""

from __future__ import annotations

import csv
import gzip
import io
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stats_log_collector.memstat.csvstore import (
    CsvStore,
    drop_over_budget,
    encode_rows,
    format_timestamp,
    header_line,
    legacy_row,
    sorted_archives,
    standard_row,
)
from stats_log_collector.memstat.sample import COLUMNS, LEGACY_COLUMNS, Sample

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
STANDARD_HEADER = ",".join(COLUMNS) + "\n"
LEGACY_HEADER = (
    "vmName,process,timestamp,RSS,RssAnon,RssFile,RssShmem,VmData,VmExe,VmHWM,VmLck,VmLib,VmPTE,VmPeak,"
    "VmPin,VmRSS,VmSize,VmStk,VmSwap\n"
)


def _sample(i: int = 0, **kw: object) -> Sample:
    fields: dict[str, object] = dict(
        timestamp=T0 + timedelta(seconds=5 * i),
        namespace="default",
        vm=f"vm{i % 3}",
        pod=f"virt-launcher-vm{i % 3}-abcde",
        node="node1",
        source="procfs",
        process="qemu-kvm",
        pid=100 + i,
        rss_bytes=1024 * (1000 + i),
    )
    fields.update(kw)
    return Sample(**fields)  # type: ignore[arg-type]


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode())))


# ---- pure formatting


def test_timestamp_rfc3339_millis() -> None:
    assert format_timestamp(T0) == "2026-11-23T10:00:00.000Z"
    assert format_timestamp(T0 + timedelta(microseconds=123456)) == "2026-11-23T10:00:00.123Z"
    east = datetime(2026, 11, 23, 12, 0, tzinfo=UTC).astimezone(datetime.now().astimezone().tzinfo)
    assert format_timestamp(east) == "2026-11-23T12:00:00.000Z"


def test_standard_row_empty_cells_for_none() -> None:
    row = standard_row(_sample(rss_anon_bytes=5, working_set_bytes=None, vm="a,b\nc"))
    assert row[:9] == [
        "2026-11-23T10:00:00.000Z", "default", "a,b c", "virt-launcher-vm0-abcde", "node1", "procfs",
        "qemu-kvm", "100", "1024000",
    ]  # fmt: skip
    assert row[9] == "5" and row[10:] == [""] * 7
    assert encode_rows([row]).decode().startswith('2026-11-23T10:00:00.000Z,default,"a,b c",')


def test_legacy_row_exact() -> None:
    status = {
        "RssAnon": 900, "RssFile": 100, "RssShmem": 4, "VmData": 5, "VmExe": 6, "VmHWM": 7, "VmLck": 0,
        "VmLib": 8, "VmPTE": 9, "VmPeak": 10, "VmPin": 0, "VmRSS": 1004, "VmSize": 11, "VmStk": 12,
        "VmSwap": 0,
    }  # fmt: skip
    sample = _sample(status_kb=status, rss_bytes=1004 * 1024)
    assert header_line("legacy").decode() == LEGACY_HEADER == ",".join(LEGACY_COLUMNS) + "\n"
    assert encode_rows([legacy_row(sample)]).decode() == (
        f"virt-launcher-vm0-abcde,qemu-kvm,{int(T0.timestamp())},1000,900,100,4,5,6,7,0,8,9,10,0,1004,11,12,0\n"
    )


def test_legacy_row_without_status_fields() -> None:
    # The kubelet source has only the container's RSS: RSS keeps it, the rest stays empty.
    sample = _sample(source="kubelet", process="compute", pid=None, rss_bytes=2048 * 1024)
    assert legacy_row(sample)[3:] == ["2048"] + [""] * 15


def test_budget_and_order_pure() -> None:
    assert drop_over_budget([("a", 5), ("b", 5), ("c", 5)], 10) == ["a"]
    assert drop_over_budget([("a", 5), ("b", 5)], 10) == []
    names = [
        "mem-stats-20261123T100000.000Z-20261123T100500.000Z-1.csv.gz",
        "mem-stats-20261123T090000.000Z-20261123T100000.000Z.csv.gz",
        "mem-stats-20261123T100000.000Z-20261123T100500.000Z.csv.gz",
        "mem-stats.csv",
        ".mem-stats-20261123T080000.000Z-20261123T080000.000Z.csv.gz.tmp",
    ]
    assert sorted_archives(names) == [names[1], names[2], names[0]]


# ---- the store


def test_header_written_once(tmp_path: Path) -> None:
    with CsvStore(tmp_path) as store:
        store.append([_sample(0), _sample(1)])
    with CsvStore(tmp_path) as store:
        store.append([_sample(2)])
    text = (tmp_path / "mem-stats.csv").read_text()
    assert text.startswith(STANDARD_HEADER)
    assert text.count("timestamp,namespace") == 1
    assert len(text.splitlines()) == 4


def test_legacy_file(tmp_path: Path) -> None:
    with CsvStore(tmp_path, fmt="legacy") as store:
        store.append([_sample(0)])
    lines = (tmp_path / "mem-stats.csv").read_text().splitlines(keepends=True)
    assert lines[0] == LEGACY_HEADER
    assert lines[1].startswith(f"virt-launcher-vm0-abcde,qemu-kvm,{int(T0.timestamp())},1000,")


def test_torn_tail_repaired(tmp_path: Path) -> None:
    with CsvStore(tmp_path) as store:
        store.append([_sample(0), _sample(1)])
    path = tmp_path / "mem-stats.csv"
    whole = path.read_bytes()
    with open(path, "ab") as f:  # what an ENOSPC short write leaves behind
        f.write(b"2026-11-23T10:00:10.000Z,default,vm2,virt-la")
    with CsvStore(tmp_path) as store:
        store.append([_sample(2)])
    data = path.read_bytes()
    assert data.startswith(whole)
    assert [r[2] for r in _rows(data)[1:]] == ["vm0", "vm1", "vm2"]


def test_torn_header_repaired(tmp_path: Path) -> None:
    (tmp_path / "mem-stats.csv").write_text(STANDARD_HEADER[:20])
    with CsvStore(tmp_path) as store:
        store.append([_sample(0)])
    assert (tmp_path / "mem-stats.csv").read_text().startswith(STANDARD_HEADER)
    assert not list(tmp_path.glob("*.old"))


def test_other_header_moved_aside(tmp_path: Path) -> None:
    with CsvStore(tmp_path, fmt="legacy") as store:
        store.append([_sample(0)])
    legacy = (tmp_path / "mem-stats.csv").read_bytes()
    clock = lambda: datetime(2026, 11, 23, 11, 0, tzinfo=UTC)  # noqa: E731
    with CsvStore(tmp_path, clock=clock) as store:
        store.append([_sample(1)])
    assert (tmp_path / "mem-stats.csv.20261123T110000.000Z.old").read_bytes() == legacy
    assert (tmp_path / "mem-stats.csv").read_text().startswith(STANDARD_HEADER)


def test_rotation_budget_and_history(tmp_path: Path) -> None:
    store = CsvStore(tmp_path, max_csv_bytes=2000, max_archive_bytes=10**9)
    written: list[bytes] = []
    with store:
        for poll in range(60):
            samples = [_sample(poll * 3 + k) for k in range(3)]
            written.append(b"".join(encode_rows([standard_row(s)]) for s in samples))
            store.append(samples)
    archives = store.archives()
    assert len(archives) >= 5
    for archive in archives:
        text = gzip.decompress(archive.read_bytes()).decode()
        assert text.startswith(STANDARD_HEADER) and text.count("timestamp,") == 1
        first, last = _rows(text.encode())[1][0], _rows(text.encode())[-1][0]
        stamp = lambda s: s.replace("-", "").replace(":", "")  # noqa: E731
        assert archive.name == f"mem-stats-{stamp(first)}-{stamp(last)}.csv.gz"
    assert not list(tmp_path.glob(".*tmp")) and not (tmp_path / "mem-stats.csv.rotating").exists()

    # Below the budget nothing is lost: history is every row written, in order, one header.
    history = b"".join(store.history(chunk_size=97))
    assert history == STANDARD_HEADER.encode() + b"".join(written)

    # Over a budget, the oldest archives go first and the rest still reads in order.
    sizes = [a.stat().st_size for a in archives]
    small = CsvStore(tmp_path, max_csv_bytes=2000, max_archive_bytes=sum(sizes[-2:]) + sizes[-1])
    with small:
        small.append([_sample(1000)])
        small.rotate()
    kept = small.archives()
    assert sum(a.stat().st_size for a in kept) <= small.max_archive_bytes
    assert archives[0] not in kept and archives[-1] in kept
    rows = _rows(b"".join(small.history()))
    assert rows[0] == list(COLUMNS)
    times = [r[0] for r in rows[1:]]
    assert times == sorted(times) and times[-1] == format_timestamp(_sample(1000).timestamp)


def test_legacy_rotation_names_archives_from_unix_seconds(tmp_path: Path) -> None:
    with CsvStore(tmp_path, fmt="legacy", max_csv_bytes=10**9) as store:
        store.append([_sample(0), _sample(1)])
        store.rotate()
        store.append([_sample(2)])
        assert [a.name for a in store.archives()] == [
            "mem-stats-20261123T100000.000Z-20261123T100005.000Z.csv.gz"
        ]
        history = b"".join(store.history()).decode()
    assert history.startswith(LEGACY_HEADER) and history.count("vmName") == 1
    assert [r[0] for r in _rows(history.encode())[1:]] == [
        "virt-launcher-vm0-abcde", "virt-launcher-vm1-abcde", "virt-launcher-vm2-abcde",
    ]  # fmt: skip


def test_interrupted_rotation_finished_on_open(tmp_path: Path) -> None:
    with CsvStore(tmp_path) as store:
        store.append([_sample(0)])
    os.rename(tmp_path / "mem-stats.csv", tmp_path / "mem-stats.csv.rotating")
    with CsvStore(tmp_path) as store:
        store.append([_sample(1)])
        assert [a.name for a in store.archives()] == [
            "mem-stats-20261123T100000.000Z-20261123T100000.000Z.csv.gz"
        ]
        assert [r[2] for r in _rows(b"".join(store.history()))[1:]] == ["vm0", "vm1"]


def test_failed_archiving_is_finished_before_the_next_rotation(tmp_path: Path) -> None:
    with CsvStore(tmp_path, max_csv_bytes=10**9) as store:
        store.append([_sample(0)])
        # What a failed gzip (disk full) leaves: the renamed file, not yet archived.
        (tmp_path / "mem-stats.csv.rotating").write_bytes(
            header_line("standard") + encode_rows([standard_row(_sample(-1))])
        )
        store.append([_sample(1)])
        store.rotate()
        assert len(store.archives()) == 2
        assert [r[2] for r in _rows(b"".join(store.history()))[1:]] == ["vm2", "vm0", "vm1"]


WRITER = """
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from stats_log_collector.memstat.csvstore import CsvStore
from stats_log_collector.memstat.sample import Sample
t0 = datetime(2026, 11, 23, tzinfo=UTC)
with CsvStore(Path(sys.argv[1]), max_csv_bytes=10**9) as store:
    i = 0
    while True:
        store.append([
            Sample(t0 + timedelta(milliseconds=i), "ns", f"vm{k}", f"pod{k}", "n", "procfs", "qemu-kvm", k,
                   k * 1024 + i, pss_bytes=i) for k in range(200)
        ])
        i += 1
        if i == 1:
            print("writing", flush=True)
"""


def test_kill_9_leaves_whole_rows_after_restart(tmp_path: Path) -> None:
    """kill -9 mid-poll: the restart keeps every whole row, in order, once, and cuts only a torn last row.

    Linux may stop a large write() to a regular file between pages when SIGKILL arrives, so the file can
    end inside a poll and inside a row; what must hold is what the next run leaves.
    """
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
    time.sleep(0.3)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    with CsvStore(tmp_path, max_csv_bytes=10**9):  # the restart repairs the tail
        pass
    data = (tmp_path / "mem-stats.csv").read_bytes()
    assert data.endswith(b"\n")
    rows = _rows(data)
    assert rows[0] == list(COLUMNS) and len(rows) > 200
    assert all(len(r) == len(COLUMNS) for r in rows)
    pid, rss = COLUMNS.index("pid"), COLUMNS.index("rss_bytes")
    expected = [(str(n % 200), str(n % 200 * 1024 + n // 200)) for n in range(len(rows) - 1)]
    assert [(r[pid], r[rss]) for r in rows[1:]] == expected  # in order, none lost, none twice


SHORT_WRITER = """
import resource, signal, sys
from datetime import UTC, datetime
from pathlib import Path
from stats_log_collector.memstat.csvstore import CsvStore
from stats_log_collector.memstat.sample import Sample
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (5000, 5000))  # the file system "fills up" at 5000 bytes
t0 = datetime(2026, 11, 23, tzinfo=UTC)
store = CsvStore(Path(sys.argv[1]))
store.open()
for i in range(1000):
    try:
        store.append([Sample(t0, "ns", f"vm{k}", "pod", "n", "procfs", "qemu-kvm", k, i) for k in range(7)])
    except OSError as e:
        print(type(e).__name__, e, flush=True)
        break
"""


def test_short_write_when_disk_fills_is_repaired(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SHORT_WRITER, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert "short write" in out.stdout
    path = tmp_path / "mem-stats.csv"
    assert path.stat().st_size == 5000 and not path.read_bytes().endswith(b"\n")
    with CsvStore(tmp_path) as store:
        store.append([_sample(0)])
    rows = _rows(path.read_bytes())
    assert all(len(r) == len(COLUMNS) for r in rows)
    # Whole rows only: the rows of the cut-short poll that reached the disk whole are kept (the only cut is
    # of the torn fragment), then the next poll's row follows on its own line.
    assert rows[-1][:3] == [format_timestamp(T0), "default", "vm0"]
    assert len(rows) - 2 > 7


def test_the_live_file_alone_is_opened_whole_and_a_rotation_after_hides_nothing(tmp_path: Path) -> None:
    # What an unfiltered download with no archive yet serves: the descriptor keeps every row it had when
    # it was opened, even when the first rotation renames the file right after.
    store = CsvStore(tmp_path, max_csv_bytes=10**9, max_archive_bytes=10**9)
    with store:
        store.append([_sample(k) for k in range(40)])
        fd = store.open_live_alone()
        assert fd is not None
        try:
            store.rotate()
            assert store.open_live_alone() is None  # an archive exists now: the history is streamed
            with os.fdopen(os.dup(fd), "rb") as kept:
                rows = _rows(kept.read())
        finally:
            os.close(fd)
    assert rows[0] == list(COLUMNS)
    assert [r[0] for r in rows[1:]] == [format_timestamp(_sample(k).timestamp) for k in range(40)]
