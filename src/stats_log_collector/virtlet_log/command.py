"""``stats-log-collector virtlet-log``: wiring the watcher to its settings, metrics and signals.

The metrics listener (aiohttp, prometheus-client) is imported only when METRICS_PORT is set: together
they cost a third of a second of CPU at start, paid on every node for nothing when nobody scrapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .. import lifecycle
from ..instance_lock import InstanceLock
from ..settings import VirtletLogSettings
from .watcher import ConsoleLogWatcher, WatcherConfig

log = logging.getLogger(__name__)

PTY = "pty"
#: In STATE_DIR: held while virtlet-log runs, so that a second instance on the same state stops at once.
LOCK_NAME = ".virtlet-log.lock"


def run(config: VirtletLogSettings) -> int:
    if config.virtlet_vm_log_location == PTY:
        log.info("VIRTLET_VM_LOG_LOCATION is pty: VM consoles are ptys, there are no log files to forward")
        lifecycle.run(_idle)
        return 0
    # The first thing done with the state (STATE_DIR exists: made when settings load); cli.py turns
    # InstanceLocked into one line and exit code 2.
    lock = InstanceLock(config.state_dir / LOCK_NAME, "STATE_DIR").acquire()
    watcher = ConsoleLogWatcher(
        WatcherConfig(
            source_root=config.vm_log_root,
            pod_log_root=config.kubernetes_pod_logs,
            state_dir=config.state_dir,
            log_format=config.log_format,
            rescan_seconds=config.sleep_seconds,
            create_pod_log_dirs=config.create_pod_log_dirs,
        )
    )

    async def run(stop: asyncio.Event) -> None:
        async with contextlib.AsyncExitStack() as stack:
            if config.metrics_port:
                from ..metrics_server import serving
                from .metrics import registry_for

                await stack.enter_async_context(serving(registry_for(watcher), config.metrics_port))
            log.info(
                "forwarding VM console logs",
                extra={
                    "from": str(config.vm_log_root),
                    "to": str(config.kubernetes_pod_logs),
                    "format": config.log_format,
                },
            )
            await watcher.run(stop)
        stats = watcher.stats
        log.info(
            "stopped", extra={"lines": stats.lines, "bytes": stats.bytes_written, "errors": stats.errors}
        )

    try:
        lifecycle.run(run)
    finally:
        lock.release()
    return 0


async def _idle(stop: asyncio.Event) -> None:
    await stop.wait()
