"""Formula injection: a VM named like a spreadsheet formula is written escaped, filters find its real name.

Any local user can start a QEMU with ``-name guest==HYPERLINK(...)``; OWASP's advice
(https://owasp.org/www-community/attacks/CSV_Injection) is a leading ``'`` on such a cell.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

from stats_log_collector.memstat.csvstore import CsvStore, csv_field_for_name, name_of_cell
from stats_log_collector.memstat.sample import COLUMNS, VmPod
from stats_log_collector.memstat.series import Query, SeriesCache

AT_NAMES = ['=HYPERLINK("http://evil","x")', "@SUM(1+1)", "+1", "-2", "\tx", "'quoted", "plain-vm"]


def test_formula_names_are_escaped_and_decoded(tmp_path: Path) -> None:
    at = datetime.now(UTC)
    with CsvStore(tmp_path) as store:
        store.append(
            [
                VmPod("ns", name, "=pod", "@node").sample(at, "procfs", "-q", 1, rss_bytes=1)
                for name in AT_NAMES
            ]
        )
    text = (tmp_path / "mem-stats.csv").read_text()
    rows = list(csv.reader(io.StringIO(text)))[1:]
    vm, pod, node, process = (COLUMNS.index(c) for c in ("vm", "pod", "node", "process"))
    assert [r[vm] for r in rows] == [
        '\'=HYPERLINK("http://evil","x")',
        "'@SUM(1+1)",
        "'+1",
        "'-2",
        "'\tx",
        "''quoted",
        "plain-vm",
    ]
    assert {(r[pod], r[node], r[process]) for r in rows} == {("'=pod", "'@node", "'-q")}
    assert [name_of_cell(r[vm]) for r in rows] == AT_NAMES
    # A filter on the raw line finds each real name by its field text.
    lines = text.splitlines()[1:]
    for name, line in zip(AT_NAMES, lines, strict=True):
        assert f",ns,{csv_field_for_name(name)},'=pod," in line


def test_the_dashboard_series_read_from_the_csv_have_the_real_names(tmp_path: Path) -> None:
    at = datetime(2026, 11, 23, 10, tzinfo=UTC)
    samples = [VmPod("=ns", name, "pod").sample(at, "procfs", "qemu", 1, rss_bytes=i << 20) for i, name in
               enumerate(AT_NAMES, 1)]  # fmt: skip
    with CsvStore(tmp_path) as store:
        store.append(samples)
        seeded, live = SeriesCache(), SeriesCache()
        live.add_samples(samples)
        seeded.seed(store.history(), store.fmt)
    query = Query(at.timestamp() - 10, at.timestamp() + 10, 20, "rss_bytes")
    assert seeded.query(query) == live.query(query)
    assert len(seeded.query(query).values) == len(AT_NAMES)
