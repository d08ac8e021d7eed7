"""``/logs/``: browse and download what logs-collector wrote, a VM's folder as one ``.tar.gz``.

The original stats-logs-collector exported logs with ``kubectl cp``; a browser link is friendlier, but a
file server on a shared volume is also an easy way to leak the node: so nothing outside LOGS_DIR is
reachable. A request path is resolved (``..``, absolute parts, symlinks) and must stay inside the
resolved root, and only regular files and directories are served; symlinks are never followed, even
inside the root. Dot-entries (logs-collector's journal ``.logs-collector/``, temporary files) are
neither listed, served nor archived.

Archives are streamed: tarfile writes from a transfer thread (``transfers``) into the HTTP response chunk
by chunk, so a folder of many GB costs a few hundred KiB of memory. logs-collector renames and deletes
files while an archive is built: each file is opened first and archived with the size its open fd has
then, so a file that vanishes is skipped and one that changes size still makes a valid tar.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import stat
import tarfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from .transfers import TransferEnded, TransferPool, drop_connection, transfers_of

log = logging.getLogger(__name__)

ARCHIVE_SUFFIX = ".tar.gz"
_CHUNK = 256 * 1024


class OutsideRoot(Exception):
    """The path leaves LOGS_DIR, or passes through something that is not a plain directory or file."""


def resolve_inside(root: Path, relative: str) -> Path:
    """``root / relative`` if it names a real directory or regular file within ``root``; else OutsideRoot.

    Every component is checked with lstat, so a symlink anywhere on the way (even one pointing inside the
    root) is refused: what is served is exactly what logs-collector wrote.
    """
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if any(part == ".." or "\x00" in part for part in parts):
        raise OutsideRoot(relative)
    if any(part.startswith(".") for part in parts):  # hidden: as if it were not there
        raise FileNotFoundError(relative)
    current = root
    for part in parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except OSError:
            raise FileNotFoundError(relative) from None
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            raise OutsideRoot(relative)
    return current


def listing_entries(directory: Path) -> list[tuple[str, bool, int, float]]:
    """(name, is_dir, size, mtime) of the plain, visible files and directories in ``directory``, by name."""
    entries = []
    with os.scandir(directory) as scan:
        for entry in scan:
            if entry.name.startswith("."):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed since the directory was read
                continue
            if stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
                entries.append((entry.name, stat.S_ISDIR(info.st_mode), info.st_size, info.st_mtime))
    return sorted(entries)


def render_listing(url_path: str, entries: list[tuple[str, bool, int, float]]) -> str:
    rows = []
    if url_path.rstrip("/") != "/logs":
        rows.append('<tr><td><a href="../">../</a></td><td></td><td></td></tr>')
    for name, is_dir, size, _ in entries:
        quoted = urllib.parse.quote(name)
        if is_dir:
            link = f'<a href="{quoted}/">{html.escape(name)}/</a>'
            extra = f'<a href="{quoted}{ARCHIVE_SUFFIX}">download {html.escape(name)}{ARCHIVE_SUFFIX}</a>'
            rows.append(f"<tr><td>{link}</td><td></td><td>{extra}</td></tr>")
        else:
            rows.append(
                f'<tr><td><a href="{quoted}">{html.escape(name)}</a></td><td>{size}</td><td></td></tr>'
            )
    title = html.escape(url_path)
    return (
        f"<!doctype html><meta charset=utf-8><title>{title}</title><h1>{title}</h1>"
        f"<table><tr><th>name</th><th>bytes</th><th></th></tr>{''.join(rows)}</table>\n"
    )


def content_disposition(kind: str, filename: str) -> str:
    """``kind; filename="..."; filename*=UTF-8''...`` (RFC 6266, RFC 5987): any name, safely quoted.

    The plain ``filename`` is an ASCII fallback for old clients, with every character that could end or
    break the header (quotes, backslashes, controls, non-ASCII) replaced by ``_``.
    """
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in filename)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(filename, safe='')}"


def archive_members(directory: Path) -> Iterator[tuple[Path, str]]:
    """(path, name in the archive) of every visible file below ``directory``, in order; not yet opened."""
    base = directory.name
    for current, subdirs, files in os.walk(directory, followlinks=False):
        subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                path = Path(current) / name
                yield path, f"{base}/{path.relative_to(directory).as_posix()}"


def open_member(path: Path) -> BinaryIO | None:
    """The file opened, or None if it is gone or not a regular file (a symlink, a FIFO ...)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # NONBLOCK: a FIFO must not hang
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


class _Exactly:
    """``size`` bytes of a file for tarfile, which wrote that size in the member's header already.

    A file cut shorter meanwhile (or unreadable) is padded with zeros, one that grew is cut at ``size``:
    either way the tar stays valid; ``short`` tells how many bytes were made up.
    """

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self._left = size
        self.short = 0

    def read(self, count: int) -> bytes:
        count = min(count, self._left)
        try:
            data = self._file.read(count) if not self.short else b""
        except OSError:
            data = b""
        if len(data) < count:
            self.short += count - len(data)
            data += bytes(count - len(data))
        self._left -= count
        return data


class _ResponseWriter:
    """A write-only file for tarfile, run on a transfer thread, that hands chunks to the event loop."""

    def __init__(
        self, response: web.StreamResponse, pool: TransferPool, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._response = response
        self._pool = pool
        self._loop = loop
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= _CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            chunk, self._buffer = bytes(self._buffer), bytearray()
            # TransferEnded (a stalled or gone client) ends this thread's archive here.
            asyncio.run_coroutine_threadsafe(self._pool.write(self._response, chunk), self._loop).result()


def write_archive(directory: Path, sink: _ResponseWriter | BinaryIO) -> None:
    """``directory`` as a gzipped tar into ``sink``, each file as it was when it was opened.

    Files that went away (logs-collector renames and deletes) are left out, files that shrank are
    padded: one log line per archive says how many.
    """
    gone: list[str] = []
    padded: list[str] = []
    with tarfile.open(fileobj=sink, mode="w|gz") as archive:  # type: ignore[call-overload]
        for path, name in archive_members(directory):
            opened = open_member(path)
            if opened is None:
                gone.append(name)
                continue
            with opened as file:
                member = archive.gettarinfo(fileobj=file, arcname=name)  # the open fd's size, owner, time
                content = _Exactly(file, member.size)
                archive.addfile(member, content)
            if content.short:
                padded.append(name)
    if isinstance(sink, _ResponseWriter):
        sink.flush()
    if gone or padded:
        log.log(
            logging.WARNING if padded else logging.INFO,
            "files changed while their folder was archived",
            extra={
                "folder": directory.name,
                "left_out": len(gone),
                "padded_with_zeros": len(padded),
                "first": (padded or gone)[0],
            },
        )


class LogsBrowser:
    """The aiohttp handler for ``GET /logs/{path}``."""

    _transfers: TransferPool  # the app's, set when the routes are added

    def __init__(self, root: Path) -> None:
        self._root = root

    def add_routes(self, app: web.Application) -> None:
        self._transfers = transfers_of(app)
        app.router.add_get("/logs", self._redirect)
        app.router.add_get(r"/logs/{path:[\s\S]*}", self.handle)  # any name: "." misses a newline

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("/logs/")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        relative = request.match_info["path"]
        archive = relative.endswith(ARCHIVE_SUFFIX)
        try:
            target = resolve_inside(self._root, relative[: -len(ARCHIVE_SUFFIX)] if archive else relative)
            if archive and not target.is_dir():  # a file that itself ends in .tar.gz
                archive, target = False, resolve_inside(self._root, relative)
        except OutsideRoot:
            raise web.HTTPForbidden(text="outside the logs directory\n") from None
        except FileNotFoundError:
            raise web.HTTPNotFound(text="no such file\n") from None
        if archive:
            return await self._archive(request, target)
        if target.is_dir():
            if not request.path.endswith("/"):
                raise web.HTTPMovedPermanently(request.path + "/")
            return self._listing(request, target)
        if request.path.endswith("/"):  # a file is not a folder
            raise web.HTTPNotFound(text="no such folder\n")
        return web.FileResponse(
            target, headers={"Content-Disposition": content_disposition("inline", target.name)}
        )

    def _listing(self, request: web.Request, directory: Path) -> web.Response:
        try:
            entries = listing_entries(directory)
        except (FileNotFoundError, NotADirectoryError):  # removed (or replaced) since it was resolved
            raise web.HTTPNotFound(text="no such folder\n") from None
        if request.query.get("format") == "json" or "application/json" in request.headers.get("Accept", ""):
            return web.json_response([{"name": n, "dir": d, "size": s, "mtime": m} for n, d, s, m in entries])
        return web.Response(text=render_listing(request.path, entries), content_type="text/html")

    async def _archive(self, request: web.Request, directory: Path) -> web.StreamResponse:
        name = (directory.name if directory != self._root else "logs") + ARCHIVE_SUFFIX
        with self._transfers.slot():
            response = web.StreamResponse(
                headers={
                    "Content-Type": "application/gzip",
                    "Content-Disposition": content_disposition("attachment", name),
                }
            )
            await response.prepare(request)
            sink = _ResponseWriter(response, self._transfers, asyncio.get_running_loop())
            try:
                await self._transfers.call(write_archive, directory, sink)
            except TransferEnded as ended:
                drop_connection(request, request.path, ended)
                return response
            await response.write_eof()
            return response
