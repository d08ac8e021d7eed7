"""Arbitrary paths and query strings against every route of the real memstat process: never a 5xx,
never a traceback in its log.
"""

from __future__ import annotations

import os
from datetime import timedelta
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import quote

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers import http, wait_for
from tests.memstat.history import vm_name, write_archive, write_history

ROUTES = (
    "/",
    "/mem-stats.csv",
    "/api/series",
    "/api/vms",
    "/dashboard",
    "/static/",
    "/metrics",
    "/healthz",
    "/readyz",
    "/logs",
    "/logs/",
    "/logs/default/",
    "/logs/default/vm-0001/",
    "/logs/default/vm-0001.tar.gz",
    "/logs/default/vm-0001/a.log.gz",
)
KEYS = ("vm", "since", "until", "points", "figure", "format")

# Text as clients and attackers send it: any character, percent-encoded; or raw pieces of paths.
any_text = st.text(max_size=30).map(lambda text: quote(text, safe=""))
path_pieces = st.sampled_from(
    ["..", ".", "", "%2e%2e", "%2F", "%00", "%zz", "%", ".tar.gz", ".logs-collector", "/"]
)
times = st.one_of(
    st.from_regex(r"\A-[0-9]{1,30}(\.[0-9]{1,5})?[smhdwy]?\Z"),
    st.datetimes().map(lambda moment: moment.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    st.sampled_from(["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "nan", "-infd", "Z"]),
).map(lambda text: quote(text, safe=""))
values = st.one_of(
    any_text, times, st.integers().map(str), st.sampled_from(["json", "rss_bytes", vm_name(1)])
)
pairs = st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), any_text), values), max_size=4)


@st.composite
def targets(draw: st.DrawFn) -> str:
    path = draw(st.sampled_from(ROUTES))
    path += "".join(draw(st.lists(st.one_of(path_pieces, any_text).map(lambda p: p + "/"), max_size=3)))
    path = path if draw(st.booleans()) else path.rstrip("/") + draw(any_text)
    query = "&".join(f"{key}={value}" for key, value in draw(pairs))
    return f"{path}?{query}" if query else path


def test_no_request_is_a_server_error(memstat, tmp_path: Path) -> None:
    data = tmp_path / "data"
    history = write_history(data, vms=3, hours=1, interval_s=60)
    write_archive(data, vms=3, start=history.start - timedelta(hours=1), hours=1, interval_s=60)
    logs = tmp_path / "logs"
    for folder in (logs / "default" / vm_name(1), logs / ".logs-collector", logs / 'odd "name",\x7f'):
        folder.mkdir(parents=True)
        (folder / "a.log.gz").write_bytes(os.urandom(4096))
    (tmp_path / "proc").mkdir()
    _, port = memstat(MEMSTAT_SOURCE="procfs", PROC_ROOT=str(tmp_path / "proc"), LOGS_DIR=str(logs))
    wait_for(lambda: http(port, "/readyz")[0] == 200, "ready")

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(target=targets())
    @example(target="%F1%83")  # not a path: aiohttp answers 400 and used to log a traceback
    @example(target="/mem-stats.csv?since=-9999999d")
    @example(target="/api/series?until=9999-12-31T23%3A59%3A59-01%3A00")
    def probe(target: str) -> None:
        connection = HTTPConnection("127.0.0.1", port, timeout=20)
        try:
            connection.putrequest("GET", target, skip_accept_encoding=True)
            connection.endheaders()
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        assert response.status < 500, (target, response.status, body[:200])

    probe()
    log = (tmp_path / "memstat.stderr").read_bytes()
    assert b"Traceback" not in log and b"Error handling request" not in log, log[-3000:]
