"""A small HTTP listener for ``/metrics`` (Prometheus text) and ``/healthz``, shared by the components.

prometheus-client's own ``start_http_server`` runs a thread per listener; we already run an asyncio loop,
so the registry is rendered by an aiohttp handler on that loop. Each component registers a Collector that
reads its live counters at scrape time, so series for files or VMs that went away simply stop appearing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .config import ConfigError

log = logging.getLogger(__name__)


def metrics_handler(registry: CollectorRegistry) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``GET /metrics`` for ``registry``, in Prometheus text format."""

    async def metrics(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return metrics


def make_app(registry: CollectorRegistry) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(registry))
    app.router.add_get("/healthz", healthz)
    return app


@contextlib.asynccontextmanager
async def serving(
    registry: CollectorRegistry, port: int, host: str = "0.0.0.0", setting: str = "METRICS_PORT"
) -> AsyncIterator[None]:
    """Serve ``registry`` on ``port`` for the duration of the block.

    A port that cannot be listened on (in use) is a ``ConfigError`` naming ``setting``: exit code 2.
    """
    runner = web.AppRunner(make_app(registry), access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise ConfigError(setting, f"cannot listen on {port}: {exc.strerror}") from None
        log.info("serving metrics", extra={"port": port})
        yield
    finally:
        await runner.cleanup()
