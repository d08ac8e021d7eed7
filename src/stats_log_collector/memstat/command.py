"""``stats-log-collector memstat``: wiring the source, the CSV store, the poller and the HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from aiohttp import web

from .. import lifecycle
from ..config import ConfigError
from ..instance_lock import InstanceLock
from ..kube import KubeError
from ..kube.kubelet import check_tls_settings
from ..settings import KubeletSettings, KubeSettings, MemstatSettings
from .choose_source import make_source
from .csv_routes import CsvRoutes
from .csvstore import VM_LAYOUT, CsvStore
from .poller import Poller
from .series import RETENTION_SECS, SeriesCache, levels_for
from .server import build_app
from .state import LiveState

log = logging.getLogger(__name__)

LOCK_NAME = ".memstat.lock"  # a dot-file: the /logs/ browser does not list it


async def seed_series(state: LiveState, store: CsvStore, vm_store: CsvStore | None = None) -> None:
    """Fill the dashboard's series from the history on disk, in a thread, while polls go on: the
    per-VM overhead and headroom from ``vm_store`` first (a fifth of the size), then mem-stats.

    Only what the coarsest resolution still keeps is read (older archives are skipped by name). A stop
    interrupts it within a block (a thread cannot be cancelled, and the event loop waits for its
    threads on exit). A history that cannot be read is logged; the series keep what was read.
    """
    since = datetime.now(UTC) - timedelta(seconds=RETENTION_SECS)
    began = time.monotonic()
    stop = threading.Event()
    try:
        if vm_store is not None:
            try:
                await asyncio.to_thread(
                    state.series.seed, vm_store.history(since=since), "vm-stats", time.time(), stop, False
                )
            except Exception:  # mem-stats' series are still worth reading
                log.exception(
                    "reading vm-stats history for the dashboard failed; overhead and headroom start empty"
                )
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


def run(config: MemstatSettings, kube: KubeSettings, kubelet: KubeletSettings) -> int:
    """Exit code 0; 1 when the API cannot be reached. Raises InstanceLocked and ConfigError (exit 2)."""
    # First: a second memstat on this DATA_DIR would rotate the CSV under the first one.
    with InstanceLock(config.data_dir / LOCK_NAME, "DATA_DIR"):
        check_settings(config, kubelet)
        return _run(config, kube, kubelet)


def check_settings(config: MemstatSettings, kubelet: KubeletSettings) -> None:
    """Settings that parse but cannot work, found before anything starts (not at the first poll)."""
    if config.memstat_source == "procfs" and not config.proc_root.is_dir():
        raise ConfigError("PROC_ROOT", f"{config.proc_root} is not a directory")
    if config.memstat_source == "kubelet" and kubelet.kubelet_access == "direct":
        check_tls_settings(kubelet)


def _run(config: MemstatSettings, kube: KubeSettings, kubelet: KubeletSettings) -> int:
    failed: list[str] = []

    async def run(stop: asyncio.Event) -> None:
        (csv_bytes, vm_csv_bytes), (archive_bytes, vm_archive_bytes) = (
            split_budget(config.max_csv_bytes),
            split_budget(config.max_archive_bytes),
        )
        # background: a rotation's gzip (seconds per GiB) must not stall polls and HTTP
        store = CsvStore(config.data_dir, config.csv_format, csv_bytes, archive_bytes, background=True)
        store.open()
        vm_store = CsvStore(
            config.data_dir, "standard", vm_csv_bytes, vm_archive_bytes, background=True, layout=VM_LAYOUT
        )
        vm_store.open()
        # A poll stuck on the API may wait a request timeout per try, retries included, before it ends:
        # /healthz allows that much beyond its missed intervals, so an API outage alone never restarts us.
        state = LiveState(
            request_timeout_s=kube.kube_request_timeout_secs * (kube.kube_retries + 1),
            series=SeriesCache(levels_for(config.poll_interval_secs)),
        )
        app = build_app(state, config.logs_dir, CsvRoutes(store, vm_store).add_routes)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        resources = contextlib.AsyncExitStack()
        try:
            try:
                await web.TCPSite(runner, "0.0.0.0", config.http_port).start()
            except OSError as exc:
                problem = f"cannot listen on {config.http_port}: {exc.strerror}"
                raise ConfigError("HTTP_PORT", problem) from None
            try:
                source, inventory = await make_source(
                    config, kube, kubelet, state.collector.node_failures, resources
                )
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
            seeding = asyncio.create_task(seed_series(state, store, vm_store))
            # the VMs and pods to sample, kept from watches while the poller runs
            watching = None
            if inventory is not None:
                state.collector.caches = inventory.caches
                watching = asyncio.create_task(inventory.run(stop))
            try:
                await Poller(source, store, state, config.poll_interval_secs, vm_store=vm_store).run(stop)
            finally:
                seeding.cancel()
                if watching is not None:
                    watching.cancel()
                    await asyncio.gather(watching, return_exceptions=True)
        finally:
            await resources.aclose()
            await runner.cleanup()
            store.close()
            vm_store.close()
            # A short archiving ends now; a long one is cut short and redone by the next start's open().
            await asyncio.to_thread(store.wait_archived, 1.0)
            await asyncio.to_thread(vm_store.wait_archived, 1.0)

    lifecycle.run(run)
    for reason in failed:
        log.error(reason)
    return 1 if failed else 0
