"""``stats-log-collector memstat``: wiring the source, the CSV store, the poller and the HTTP server."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from aiohttp import web

from .. import lifecycle
from ..kube import KubeError
from ..settings import KubeSettings, MemstatSettings
from .choose_source import make_source
from .csv_routes import CsvRoutes
from .csvstore import VM_LAYOUT, CsvStore
from .poller import Poller
from .series import RETENTION_SECS
from .server import build_app
from .state import LiveState

log = logging.getLogger(__name__)


async def seed_series(state: LiveState, store: CsvStore) -> None:
    """Fill the dashboard's series from the history on disk, in a thread, while polls go on.

    Only what the coarsest resolution still keeps is read (older archives are skipped by name). A stop
    interrupts it within a block (a thread cannot be cancelled, and the event loop waits for its
    threads on exit). A history that cannot be read is logged; the series keep what was read.
    """
    since = datetime.now(UTC) - timedelta(seconds=RETENTION_SECS)
    began = time.monotonic()
    stop = threading.Event()
    try:
        rows = await asyncio.to_thread(
            state.series.seed, store.history(since=since), store.fmt, time.time(), stop
        )
    except asyncio.CancelledError:
        stop.set()
        raise
    except Exception:  # a damaged archive must not leave the dashboard "reading" forever
        log.exception("reading mem-stats history for the dashboard failed; its series start incomplete")
        state.series.seeded = True
        return
    log.info(
        "dashboard series read from mem-stats history",
        extra={"rows": rows, "seconds": round(time.monotonic() - began, 1)},
    )


# vm-stats.csv's share of MAX_CSV_BYTES and MAX_ARCHIVE_BYTES: one row per VM where mem-stats.csv has
# one per process (3 to 5 per VM with the exec and procfs sources), and rows of about the same length.
VM_STATS_SHARE = 5


def split_budget(total: int) -> tuple[int, int]:
    """A byte budget shared by mem-stats.csv and vm-stats.csv: (mem-stats', vm-stats')."""
    vm_stats = total // VM_STATS_SHARE
    return total - vm_stats, vm_stats


def run(config: MemstatSettings, kube: KubeSettings) -> int:
    failed: list[str] = []

    async def run(stop: asyncio.Event) -> None:
        (csv_bytes, vm_csv_bytes), (archive_bytes, vm_archive_bytes) = (
            split_budget(config.max_csv_bytes),
            split_budget(config.max_archive_bytes),
        )
        store = CsvStore(config.data_dir, config.csv_format, csv_bytes, archive_bytes)
        store.open()
        vm_store = CsvStore(config.data_dir, "standard", vm_csv_bytes, vm_archive_bytes, layout=VM_LAYOUT)
        vm_store.open()
        state = LiveState()
        app = build_app(state, config.logs_dir, CsvRoutes(store, vm_store).add_routes)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        client = None
        try:
            try:
                await web.TCPSite(runner, "0.0.0.0", config.http_port).start()
            except OSError as exc:
                failed.append(f"cannot listen on HTTP_PORT {config.http_port}: {exc.strerror}")
                return
            try:
                source, client = await make_source(config, kube)
            except KubeError as exc:
                failed.append(f"cannot reach the Kubernetes API: {exc}")
                return
            log.info(
                "sampling",
                extra={
                    "source": source.name,
                    "namespaces": ",".join(config.namespace),
                    "interval_s": config.poll_interval_secs,
                    "csv": str(store.path),
                    "port": config.http_port,
                },
            )
            seeding = asyncio.create_task(seed_series(state, store))
            try:
                await Poller(source, store, state, config.poll_interval_secs, vm_store=vm_store).run(stop)
            finally:
                seeding.cancel()
        finally:
            if client is not None:
                await client.close()
            await runner.cleanup()
            store.close()
            vm_store.close()

    lifecycle.run(run)
    for reason in failed:
        log.error(reason)
    return 1 if failed else 0
