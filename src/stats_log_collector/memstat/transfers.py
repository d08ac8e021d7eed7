"""Long HTTP transfers (folder archives, the CSV history, filtered CSV) on their own bounded threads.

A transfer's worker thread reads, gunzips, filters or compresses while the client takes the bytes. On
the event loop's default executor, seven clients reading a folder archive at 2 KB/s held every thread
of it (the pool has ``cpu + 4`` threads), and the polls, which read /proc there, stopped. So long
transfers get their own executor, sized to a limit; a request beyond the limit is answered 503 with
Retry-After at once instead of waiting in a queue; and a write that a client does not take within
``write_timeout_s`` ends its transfer, which frees its thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from aiohttp import web

log = logging.getLogger(__name__)

MAX_TRANSFERS = 7
RETRY_AFTER_SECS = 10
WRITE_TIMEOUT_SECS = 60.0
# A write waits until the client has taken all but aiohttp's low-water mark (16 KiB) of it; small pieces
# make the timeout mean "the client took nothing for a minute", not "a large chunk was slow".
_PIECE = 64 * 1024

T = TypeVar("T")


class TransferEnded(Exception):
    """The client stalled or went away: the transfer was cut short and its connection must be dropped."""


class TransferPool:
    """At most ``limit`` long transfers at once, each on a thread of this pool's own executor."""

    def __init__(self, limit: int = MAX_TRANSFERS, write_timeout_s: float = WRITE_TIMEOUT_SECS) -> None:
        self.limit = limit
        self.write_timeout_s = write_timeout_s
        self.active = 0
        self._executor = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="memstat-transfer")

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the ``limit`` places for a transfer, or answer 503 with Retry-After."""
        if self.active >= self.limit:
            raise web.HTTPServiceUnavailable(
                headers={"Retry-After": str(RETRY_AFTER_SECS)},
                text=f"{self.limit} downloads are running; retry in {RETRY_AFTER_SECS} s\n",
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    async def call(self, function: Callable[..., T], *args: object) -> T:
        """``function(*args)`` on one of this pool's threads (never the loop's default executor)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def write(self, response: web.StreamResponse, data: bytes) -> None:
        """Send ``data``; TransferEnded if the client takes none of a piece in time or has gone."""
        view = memoryview(data)
        try:
            for start in range(0, len(view), _PIECE):
                await asyncio.wait_for(response.write(view[start : start + _PIECE]), self.write_timeout_s)
        except TimeoutError:
            raise TransferEnded(f"the client took nothing for {self.write_timeout_s:g} s") from None
        except ConnectionError as exc:
            raise TransferEnded(f"the client went away ({exc})") from None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def drop_connection(request: web.Request, what: str, reason: TransferEnded) -> None:
    """One log line, and the connection closed without the end of the body: the client sees it was cut."""
    log.info("download cut short", extra={"path": what, "reason": str(reason)})
    if request.transport is not None:
        request.transport.abort()


TRANSFERS = web.AppKey("memstat_transfers", TransferPool)


def transfers_of(app: web.Application, pool: TransferPool | None = None) -> TransferPool:
    """The app's one pool (archives and CSV downloads share its limit): ``pool``, or a default one."""
    if TRANSFERS not in app:
        pool = pool or TransferPool()
        app[TRANSFERS] = pool

        async def shutdown(app: web.Application) -> None:
            pool.shutdown()

        app.on_cleanup.append(shutdown)
    return app[TRANSFERS]
