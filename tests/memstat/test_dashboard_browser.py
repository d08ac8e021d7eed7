"""The dashboard and the per-VM page in real headless Chromium, served by a real memstat over real
QEMU-named processes.

The chart must have one series per VM with points in the last minute; the table the per-VM figures of
QEMUs started with ``-m`` in memory cgroups with a limit. Screenshots are kept in ``artifacts/``
(``dashboard.png``, ``vm-page.png``) for people to look at.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from stats_log_collector.demo.cgroup import CgroupUnavailable, VmCgroups
from tests.helpers import http, wait_for
from tests.memstat.history import vm_name, write_history

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).parents[2] / "artifacts"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=8000", "--window-size=1200,800",
]  # fmt: skip

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
]


def chromium(url: str, *args: str) -> str:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, url],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    return result.stdout


MiB = 1 << 20
CONSOLE_LINES = [f"boot line {i}" for i in range(80)] + ["<img src=x onerror=alert(1)> login:"]
# A VM name a browser must show as text: markup, quotes, a dot segment, unicode (QEMU's -name takes it).
HOSTILE = "<script>alert(1)</script>\"'..\u00fc"


class Rows(HTMLParser):
    """The text of every cell of the table with ``id``, per row, with each row's class."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside = table_id, False
        self.rows: list[tuple[str, list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.inside = dict(attrs).get("id") == self.table_id
        elif self.inside and tag == "tr":
            self.rows.append((dict(attrs).get("class") or "", []))
        elif self.inside and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.rows:
            self.rows[-1][1].append("".join(self.cell))
            self.cell = None
        elif tag == "table":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def table_rows(dom: str, table_id: str) -> list[tuple[str, list[str]]]:
    parser = Rows(table_id)
    parser.feed(dom)
    return parser.rows


def chart_series(dom: str, chart_id: str) -> list[str]:
    """The labels a chart of the VM page drew (its ``data-series``)."""
    found = re.search(rf'id="{chart_id}"[^>]*data-series="([^"]*)"', dom)
    assert found is not None, chart_id
    return list(json.loads(found[1].replace("&quot;", '"')))


def rss_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) * 1024  # type: ignore[index]


@pytest.fixture
def limited_vms(tmp_path: Path) -> Iterator[dict[str, tuple[int, int]]]:
    """Fake QEMUs with ``-m 60`` in memory cgroups of their own: ``lowvm`` with a limit 4 MiB above its
    RSS (under 10 % headroom), ``okvm`` and a hostile name 200 MiB above. Name -> (pid, limit)."""
    try:
        cgroups = VmCgroups.of_this_process(f"slc-test-{os.getpid()}")
    except CgroupUnavailable as exc:
        pytest.skip(f"no memory cgroup to make: {exc}")
    binary = tmp_path / "qemu-kvm"
    binary.symlink_to(os.path.realpath(sys.executable))
    started: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    vms: dict[str, tuple[int, int]] = {}
    try:
        for cgroup, (name, spare) in enumerate(
            (("lowvm", 4 * MiB), ("okvm", 200 * MiB), (HOSTILE, 200 * MiB))
        ):
            code = "x = bytearray(64 << 20); print('ready', flush=True); import time; time.sleep(120)"
            args = [str(binary), "-c", code, "-name", f"guest={name},debug-threads=on", "-m", "60"]
            process = subprocess.Popen(args, stdout=subprocess.PIPE)
            started[name] = (process, f"vm{cgroup}")
            assert process.stdout is not None and process.stdout.readline() == b"ready\n"
            try:
                directory = cgroups.create(f"vm{cgroup}", 1 << 40)
            except CgroupUnavailable as exc:
                pytest.skip(f"no memory cgroup to make: {exc}")
            (directory / "cgroup.procs").write_text(f"{process.pid}\n")
            limit = (rss_of(process.pid) + spare) // MiB * MiB
            (directory / cgroups.hierarchy.limit_file).write_text(f"{limit}\n")
            vms[name] = (process.pid, limit)
        yield vms
    finally:
        for process, _ in started.values():
            process.kill()
            process.wait()
        cgroups.remove_all(cgroup for _, cgroup in started.values())


def test_dashboard_draws_one_series_per_vm(memstat, fake_vm: int, tmp_path: Path) -> None:
    # Two hours of five VMs' history on disk (read at start), ending in the future: the last hour is full.
    this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    write_history(tmp_path / "data", vms=5, hours=2, start=this_hour - timedelta(hours=1))
    process, port = memstat(MEMSTAT_SOURCE="procfs")
    wait_for(lambda: b'"complete": true' in http(port, "/api/series?since=-1m")[1], "the history read")
    time.sleep(3)  # a few samples of the live VM
    dom = chromium(f"http://127.0.0.1:{port}/dashboard", "--dump-dom")
    labels = re.findall(r'<div class="u-label">([^<]*)</div>', dom)
    assert labels[0] == "Time" and "testvm" in labels, labels  # other QEMUs of this host may show too
    assert {f"vms/{vm_name(i)}" for i in range(5)} <= set(labels)
    points = json.loads(re.search(r'data-points="([^"]*)"', dom)[1].replace("&quot;", '"'))  # type: ignore[index]
    assert points["testvm"] >= 1
    assert points["vms/vm-0000"] >= 300  # the hour read from disk, at 5 s
    assert "reading the history" not in dom
    assert '<a href="vms/_/testvm">testvm</a>' in dom  # the latest-sample table, linked to the VM's page
    ARTIFACTS.mkdir(exist_ok=True)
    chromium(f"http://127.0.0.1:{port}/dashboard", f"--screenshot={ARTIFACTS / 'dashboard.png'}")
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
    process.terminate()


def test_table_and_vm_page_show_the_per_vm_figures(
    memstat, limited_vms: dict[str, tuple[int, int]], tmp_path: Path
) -> None:
    # What logs-collector would have written: lowvm's console, an older window and the newest one.
    folder = tmp_path / "data" / "logs" / "lowvm"
    folder.mkdir(parents=True)
    for stamp, lines in (("20261201T040000Z", ["old window"]), ("20261201T050000Z", CONSOLE_LINES)):
        text = "".join(f"{line}\n" for line in lines).encode()
        (folder / f"virt-launcher-lowvm-x.guest-console-log.{stamp}.log.gz").write_bytes(gzip.compress(text))
    process, port = memstat(MEMSTAT_SOURCE="procfs")
    wait_for(lambda: re.search(rb'"headroom_bytes": \d', _vm(port, "lowvm")) is not None, "lowvm's figures")
    time.sleep(3)  # a few samples: the overhead has points
    dom = chromium(f"http://127.0.0.1:{port}/dashboard", "--dump-dom")
    assert "<script>alert" not in dom  # the hostile name is text, not markup
    rows = {cells[0]: (cls, cells) for cls, cells in table_rows(dom, "latest")[1:]}
    assert {"lowvm", "okvm", HOSTILE} <= set(rows), rows
    header = table_rows(dom, "latest")[0][1]
    for name, (_pid, limit) in limited_vms.items():
        cls, cells = rows[name]
        cell = dict(zip(header, cells, strict=True))
        assert cell["guest MiB"] == "60.0"  # QEMU's -m 60
        assert cell["limit MiB"] == f"{limit / MiB:.1f}"  # the cgroup's
        measured = float(cell["measured MiB"])
        assert 60 < measured < limit / MiB  # the 64 MiB the process holds and the interpreter
        assert float(cell["overhead MiB"]) == pytest.approx(measured - 60, abs=0.11)
        assert float(cell["headroom MiB"]) == pytest.approx(limit / MiB - measured, abs=0.11)
        assert cell["requested overhead MiB"] == "—"  # no pod, no request
        assert cell["processes (RSS MiB)"].startswith("qemu-kvm ")
        low = name == "lowvm"
        assert (cls == "low-headroom") == low and (cell[""] == "⚠ low headroom") == low, (name, cells)

    # The VM's page, linked from the table; the chooser has the new figures and they have points.
    assert 'href="vms/_/lowvm"' in dom
    assert '<option value="overhead_bytes">overhead</option>' in dom
    page = chromium(f"http://127.0.0.1:{port}/vms/_/lowvm", "--dump-dom")
    figures = {cells[0]: cells[1] for _, cells in table_rows(page, "figures")}
    assert figures["guest memory MiB"] == "60.0"
    assert figures["limit MiB"] == f"{limited_vms['lowvm'][1] / MiB:.1f}"
    assert figures["headroom MiB"].endswith("⚠ low headroom")
    assert [cells[0] for _, cells in table_rows(page, "processes")[1:]] == ["qemu-kvm"]
    assert chart_series(page, "memory") == ["qemu-kvm", "guest memory", "limit"]
    assert chart_series(page, "overhead") == ["overhead"]
    console = re.search(r'<pre id="console-lines">([^<]*)</pre>', page)
    assert console is not None and 'id="console" hidden' not in page
    assert console[1].split("\n") == [*CONSOLE_LINES[-50:-1], "&lt;img src=x onerror=alert(1)&gt; login:"]
    assert (
        "virt-launcher-lowvm-x.guest-console-log.20261201T050000Z.log.gz" in page
    )  # no requested overhead without a pod
    ARTIFACTS.mkdir(exist_ok=True)
    chromium(
        f"http://127.0.0.1:{port}/vms/_/lowvm?range=300",
        f"--screenshot={ARTIFACTS / 'vm-page.png'}",
        "--window-size=1200,1700",  # the whole page: figures, both charts, the console
    )
    assert (ARTIFACTS / "vm-page.png").stat().st_size > 10_000
    chromium(
        f"http://127.0.0.1:{port}/dashboard?range=300", f"--screenshot={ARTIFACTS / 'dashboard-figures.png'}"
    )
    # The chooser's headroom: one series per VM with a limit, from the per-VM figures.
    url = f"http://127.0.0.1:{port}/dashboard?range=300&figure=headroom_bytes"
    dom = chromium(url, "--dump-dom")
    assert "headroom (MiB), one series per VM" in dom
    assert {"lowvm", "okvm"} <= set(re.findall(r'<div class="u-label">([^<]*)</div>', dom))
    chromium(url, f"--screenshot={ARTIFACTS / 'dashboard-headroom.png'}")

    # The hostile name: its page shows it as text; names only compared, so unknown ones are 404.
    hostile = urllib.parse.quote(HOSTILE, safe="")
    assert http(port, f"/vms/_/{hostile}")[0] == 200
    page = chromium(f"http://127.0.0.1:{port}/vms/_/{hostile}", "--dump-dom")
    assert "<script>alert" not in page
    assert re.search(r'<span id="name">&lt;script&gt;alert\(1\)&lt;/script&gt;"\'\.\.ü</span>', page), page[
        :2000
    ]
    for path in ("/vms/_/nosuch", "/vms/vms/lowvm", "/vms/_/..%2F..%2Fetc%2Fpasswd", "/api/vms/_/nosuch",
                 f"/vms/_/{hostile}x", "/vms/_/lowvm/..", "/api/vms/_/..%2Fdata"):  # fmt: skip
        status, _ = http(port, path)
        assert status == 404, (path, status)
    assert b"No such VM" in http(port, "/vms/_/nosuch")[1]
    process.terminate()


def _vm(port: int, name: str) -> bytes:
    return http(port, f"/api/vms/_/{name}?since=-1m")[1]
