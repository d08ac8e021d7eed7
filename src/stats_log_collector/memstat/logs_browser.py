"""``/logs/``: browse and download what logs-collector wrote, a VM's folder as one ``.tar.gz``.

The original stats-logs-collector exported logs with ``kubectl cp``; a browser link is friendlier, but a
file server on a shared volume is also an easy way to leak the node: so nothing outside LOGS_DIR is
reachable. A request path is resolved (``..``, absolute parts, symlinks) and must stay inside the
resolved root, and only regular files and directories are served; symlinks are never followed, even
inside the root.

Archives are streamed: tarfile writes from a worker thread into the HTTP response chunk by chunk, so a
folder of many GB costs a few hundred KiB of memory.
"""

from __future__ import annotations

import asyncio
import html
import os
import stat
import tarfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

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
    """(name, is_dir, size, mtime) of the plain files and directories in ``directory``, sorted by name."""
    entries = []
    with os.scandir(directory) as scan:
        for entry in scan:
            info = entry.stat(follow_symlinks=False)
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


def archive_members(directory: Path) -> Iterator[tuple[Path, str]]:
    """(file, name in the archive) for every regular file below ``directory``; symlinks are skipped."""
    base = directory.name
    for current, subdirs, files in os.walk(directory, followlinks=False):
        subdirs.sort()
        for name in sorted(files):
            path = Path(current) / name
            if stat.S_ISREG(os.lstat(path).st_mode):
                yield path, f"{base}/{path.relative_to(directory).as_posix()}"


class _ResponseWriter:
    """A write-only file for tarfile, run in a worker thread, that hands chunks to the event loop."""

    def __init__(self, response: web.StreamResponse, loop: asyncio.AbstractEventLoop) -> None:
        self._response = response
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
            asyncio.run_coroutine_threadsafe(self._response.write(chunk), self._loop).result()


def _write_archive(directory: Path, sink: _ResponseWriter) -> None:
    with tarfile.open(fileobj=sink, mode="w|gz") as archive:  # type: ignore[call-overload]
        for path, name in archive_members(directory):
            with path.open("rb") as file:
                info = archive.gettarinfo(fileobj=file, arcname=name)
                archive.addfile(info, file)
    sink.flush()


class LogsBrowser:
    """The aiohttp handler for ``GET /logs/{path}``."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/logs", self._redirect)
        app.router.add_get("/logs/{path:.*}", self.handle)

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
        return web.FileResponse(target, headers={"Content-Disposition": f'inline; filename="{target.name}"'})

    def _listing(self, request: web.Request, directory: Path) -> web.Response:
        entries = listing_entries(directory)
        if request.query.get("format") == "json" or "application/json" in request.headers.get("Accept", ""):
            return web.json_response([{"name": n, "dir": d, "size": s, "mtime": m} for n, d, s, m in entries])
        return web.Response(text=render_listing(request.path, entries), content_type="text/html")

    async def _archive(self, request: web.Request, directory: Path) -> web.StreamResponse:
        name = (directory.name if directory != self._root else "logs") + ARCHIVE_SUFFIX
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/gzip",
                "Content-Disposition": f'attachment; filename="{name}"',
            }
        )
        await response.prepare(request)
        sink = _ResponseWriter(response, asyncio.get_running_loop())
        await asyncio.to_thread(_write_archive, directory, sink)
        await response.write_eof()
        return response
