"""Serving the CSV: ``GET /`` and ``GET /mem-stats.csv``, whole history or filtered, streamed.

- Unfiltered, with no archives yet: the live file itself (through a descriptor opened under the store's
  rotation lock) with aiohttp's FileResponse, which answers Range, ETag / If-None-Match and
  If-Modified-Since exactly as for any static file.
- Otherwise the kept history (archives, then the live file) is streamed with one header, filtered row by
  row (``?vm=a&vm=b&since=-1h&until=2026-11-23T10:00:00Z``), gzip-compressed on the fly when the client
  asks for it; the ETag names the files and sizes it was built from, so a repeated download of an
  unchanged history is a 304. Memory stays flat whatever the history's size. These streams are long
  transfers: they run on the transfer pool's threads, within its limit (``transfers``).

Each ``vm=`` value is one exact VM name, whatever it holds (a comma, a quote): it is matched as the CSV
writer encodes it. A single ``vm=`` value with commas is also read the older way, as a list of names.

The filters are pure functions of a line, tested directly.
"""

from __future__ import annotations

import hashlib
import os
import re
import weakref
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from .csvstore import CsvStore, csv_field_for_name
from .transfers import TransferEnded, TransferPool, drop_connection, transfers_of

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(raw: str, now: datetime) -> datetime:
    """RFC3339 (``2026-11-23T10:00:00Z``) or relative to now (``-90s``, ``-15m``, ``-1h``, ``-7d``)."""
    match = _RELATIVE.match(raw.strip())
    try:
        if match:
            return (now - timedelta(seconds=float(match[1]) * _UNITS[match[2]])).astimezone(UTC)
        try:
            moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not a time: {raw!r} (use RFC3339 or -15m, -1h, -7d)") from None
        # In UTC now, so a time at the edge of the calendar fails here, not in a filter later.
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise ValueError(f"time out of range: {raw[:40]!r} (years 1 to 9999)") from None


def row_filter(
    fmt: str, vms: set[str] | None, since: datetime | None, until: datetime | None
) -> Callable[[bytes], bool] | None:
    """A predicate over one CSV line, or None when nothing is filtered.

    Standard rows start ``timestamp,namespace,vm,...`` (RFC3339 text compares in time order); legacy rows
    start ``vmName,process,timestamp`` with unix seconds, and their vmName is the launcher pod name.
    """
    if vms is None and since is None and until is None:
        return None
    wanted = re.compile(_vm_prefix(fmt, vms)) if vms else None
    if fmt == "legacy":
        low = since.timestamp() if since else None
        high = until.timestamp() if until else None

        def legacy(line: bytes) -> bool:
            if wanted is not None and not wanted.match(line):
                return False
            # The pod name (a DNS name) is never quoted; process and time follow it.
            moment = float(line.split(b",", 3)[2])
            return (low is None or moment >= low) and (high is None or moment < high)

        return legacy
    low_text = _stamp(since) if since else None
    high_text = _stamp(until) if until else None

    def standard(line: bytes) -> bool:
        if wanted is not None and not wanted.match(line):
            return False
        moment = line.split(b",", 1)[0]
        return (low_text is None or moment >= low_text) and (high_text is None or moment < high_text)

    return standard


# One CSV cell as csv.writer writes it: quoted (quotes doubled) or plain; rows never hold a newline.
_CELL = rb'(?:"(?:[^"\n]|"")*"|[^,"\n]*)'


def _vm_prefix(fmt: str, vms: set[str]) -> bytes:
    """A regex matching the start of a row of one of ``vms``, up to the end of the VM's cell."""
    safe = fmt != "legacy"  # only the standard CSV escapes would-be formulas
    names = b"|".join(re.escape(csv_field_for_name(name, safe).encode()) for name in sorted(vms))
    if fmt == "legacy":
        return rb"^(?:" + names + rb")(?:,|$)"
    return rb"^[^,\n]*," + _CELL + rb",(?:" + names + rb")(?:,|$)"


def _stamp(moment: datetime) -> bytes:
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return text.encode()


def candidate_rows(fmt: str, vms: set[str] | None) -> re.Pattern[bytes] | None:
    """A regex finding the rows of ``vms`` in a block of rows at C speed, or None without a VM filter.

    A VM filter over a multi-GB history would otherwise split and test millions of lines in Python; the
    rows it finds still go through the full predicate (times, exact name).
    """
    if not vms:
        return None
    return re.compile(_vm_prefix(fmt, vms) + rb"[^\n]*", re.MULTILINE)


def filter_chunks(
    chunks: Iterable[bytes], keep: Callable[[bytes], bool], candidates: re.Pattern[bytes] | None = None
) -> Iterator[bytes]:
    """History chunks in (the first is the header alone; the others may cut rows anywhere), kept rows out.

    ``candidates`` (see :func:`candidate_rows`) picks the rows worth testing out of each block.
    """
    iterator = iter(chunks)
    yield next(iterator, b"")
    pending = b""
    for chunk in iterator:
        block = pending + chunk
        cut = block.rfind(b"\n") + 1
        block, pending = block[:cut], block[cut:]
        lines = candidates.findall(block) if candidates is not None else block.split(b"\n")
        kept = [line for line in lines if line and _safe(keep, line)]
        if kept:
            yield b"\n".join(kept) + b"\n"
    if pending and _safe(keep, pending):
        yield pending + b"\n"


def _safe(keep: Callable[[bytes], bool], line: bytes) -> bool:
    try:
        return keep(line)
    except (ValueError, IndexError):  # a malformed row (a foreign line) is left out, not fatal
        return False


class CsvRoutes:
    """``/`` and ``/mem-stats.csv`` for the samples' store; ``/vm-stats.csv`` for the per-VM one."""

    _transfers: TransferPool  # the app's, set when the routes are added

    def __init__(self, store: CsvStore, vm_store: CsvStore | None = None) -> None:
        self._store = store
        self._vm_store = vm_store

    def add_routes(self, app: web.Application) -> None:
        self._transfers = transfers_of(app)
        app.router.add_get("/", self.handle)
        app.router.add_get("/mem-stats.csv", self.handle)
        if self._vm_store is not None:
            vm_routes = CsvRoutes(self._vm_store)
            vm_routes._transfers = self._transfers
            app.router.add_get("/vm-stats.csv", vm_routes.handle)

    def _etag(self) -> str:
        parts = []
        for path in [*self._store.archives(), self._store.path]:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
        return hashlib.sha1("|".join(parts).encode()).hexdigest()[:20]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        now = datetime.now(UTC)
        try:
            since, until = _when(request, "since", now), _when(request, "until", now)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        vms = vm_names(request.query.getall("vm", []))
        keep = row_filter(self._store.fmt, vms, since, until)
        headers = {"Content-Disposition": f'inline; filename="{self._store.layout.name}"'}
        if keep is None and (live := self._store.open_live_alone()) is not None:
            return _OpenFileResponse(live, headers={**headers, "Content-Type": "text/csv"})
        etag = self._etag()
        if keep is None and request.if_none_match and any(tag.value == etag for tag in request.if_none_match):
            return web.Response(status=304, headers={"ETag": f'"{etag}"'})
        with self._transfers.slot():
            response = web.StreamResponse(headers={**headers, "Content-Type": "text/csv; charset=utf-8"})
            if keep is None:
                response.headers["ETag"] = f'"{etag}"'
            if "gzip" in request.headers.get("Accept-Encoding", ""):
                response.enable_compression(web.ContentCoding.gzip)
            await response.prepare(request)
            chunks: Iterable[bytes] = self._store.history(since=since)
            if keep is not None:
                chunks = filter_chunks(chunks, keep, candidate_rows(self._store.fmt, vms))
            try:
                await self._send(response, iter(chunks))
            except TransferEnded as ended:
                drop_connection(request, request.path_qs, ended)
                return response
            await response.write_eof()
            return response

    async def _send(self, response: web.StreamResponse, iterator: Iterator[bytes]) -> None:
        # Reading, gunzipping and filtering run on a transfer thread, a chunk at a time: done on the event
        # loop, a filtered scan of a large history (whose few kept rows never fill the socket buffer, so
        # write() never waits) would hold the loop for its whole length, and the polls with it.
        pool = self._transfers
        try:
            while (chunk := await pool.call(next, iterator, None)) is not None:
                await pool.write(response, chunk)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                await pool.call(close)  # the history generator closes its files


class _OpenFileResponse(web.FileResponse):
    """aiohttp's FileResponse (Range, ETag, If-Modified-Since) over a descriptor opened earlier.

    The live file is opened under the store's rotation lock; a rotation between that moment and the
    response renames it, and the descriptor (read through ``/proc/self/fd``) still holds every row it had.
    The descriptor is closed once the response is sent, or when the response is dropped unsent.
    """

    def __init__(self, fd: int, headers: dict[str, str]) -> None:
        super().__init__(f"/proc/self/fd/{fd}", headers=headers)
        self._close_fd = weakref.finalize(self, os.close, fd)

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        try:
            return await super().prepare(request)
        finally:
            self._close_fd()


def _when(request: web.Request, name: str, now: datetime) -> datetime | None:
    raw = request.query.get(name)
    return parse_when(raw, now) if raw else None


def vm_names(values: list[str]) -> set[str] | None:
    """The VMs ``?vm=`` selects: each value one exact name; a single value with commas is also a list."""
    names = set(values)
    if len(values) == 1:
        names.update(values[0].split(","))
    names.discard("")
    return names or None
