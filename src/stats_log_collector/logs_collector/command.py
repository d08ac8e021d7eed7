"""``stats-log-collector logs-collector``: a run every COLLECT_INTERVAL_SECS, or now on SIGUSR1, or once.

Running, it keeps the VMIs, launcher pods and virt-handler pods from watches (``kube.ObjectCache``):
each run plans from the caches' snapshots instead of listing everything, and the launcher pods'
changes start early collections (``early``) as soon as a pod is going or a container restarted.
``--once`` lists instead: a process that exits after one run has no later change to react to, and a
watch would cost the same list plus a connection for nothing.

Runs follow the shared fixed grid (``schedule``) and never overlap; SIGTERM cancels the current run
and the early collections, keeping what they published. ``--once`` exits 0 after a run, 1 when the API
could not be reached or listed. Details: docs/logs-collector.md, "Runs and stopping".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Coroutine
from typing import Any

from .. import lifecycle
from ..instance_lock import InstanceLock
from ..kube import KubeClient, KubeError
from ..schedule import next_tick
from ..settings import KubeSettings, LogsCollectorSettings
from .collector import Collector
from .early import EarlyCollector
from .inventory import Caches
from .layout import STATE_DIR
from .verbosity import raise_verbosity

log = logging.getLogger(__name__)

LOCK_NAME = "lock"  # in the hidden state folder, $DATA_DIR/.logs-collector/


def run(config: LogsCollectorSettings, kube: KubeSettings) -> int:
    """Exit code 0, or 1 (see the module); raises InstanceLocked and ConfigError (exit code 2)."""
    # First: two collectors on one DATA_DIR would both publish every window and race on the journal.
    state = config.data_dir / STATE_DIR
    state.mkdir(exist_ok=True)
    with InstanceLock(state / LOCK_NAME, "DATA_DIR"):
        return _run(config, kube)


def _run(config: LogsCollectorSettings, kube: KubeSettings) -> int:
    failed: list[str] = []

    async def component(stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, wake.set)
        try:
            try:
                client = await KubeClient.connect(kube)
            except KubeError as exc:
                failed.append(f"cannot reach the Kubernetes API: {exc}")
                return
            collector = Collector(client, config)
            try:
                collector.open()
                if config.once:
                    await _serve(collector, client, config, stop, wake, failed, None)
                else:
                    await _watched(collector, client, config, stop, wake, failed)
            finally:
                collector.close()
                await client.close()
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)

    lifecycle.run(component)
    for reason in failed:
        log.error(reason)
    return 1 if failed else 0


async def _watched(
    collector: Collector,
    client: KubeClient,
    config: LogsCollectorSettings,
    stop: asyncio.Event,
    wake: asyncio.Event,
    failed: list[str],
) -> None:
    """Run the caches and the early collections beside the runs, until stopped."""
    caches = Caches.of(client, config.namespace, config.handler_namespace)
    synced = asyncio.Event()
    early = EarlyCollector(collector, synced)
    caches.vmis.subscribe(early.on_vmi_change)
    caches.launcher_pods.subscribe(early.on_pod_change)
    halt = asyncio.Event()  # the caches stop with the component, whatever ends it
    running = [asyncio.create_task(cache.run(halt)) for cache in caches.all]
    try:
        log.info("listing and watching VMIs and pods")
        await _until_stopped(caches.wait_synced(), stop)
        if stop.is_set():
            return
        synced.set()
        await _serve(collector, client, config, stop, wake, failed, caches)
    finally:
        await early.stop()
        halt.set()
        await asyncio.gather(*running, return_exceptions=True)


async def _serve(
    collector: Collector,
    client: KubeClient,
    config: LogsCollectorSettings,
    stop: asyncio.Event,
    wake: asyncio.Event,
    failed: list[str],
    caches: Caches | None,
) -> None:
    log.info(
        "collecting",
        extra={
            "namespaces": ",".join(config.namespace),
            "handler_namespace": config.handler_namespace,
            "interval_s": config.collect_interval_secs,
            "data_dir": str(config.data_dir),
            "once": config.once,
        },
    )
    verbosity_done = config.log_verbosity is None
    start = time.monotonic()
    scheduled = start
    while not stop.is_set():
        await _sleep_until(scheduled, stop, wake)
        if stop.is_set():
            return
        wake.clear()
        if not verbosity_done:
            verbosity_done = await _verbosity(client, config)
        try:
            await _until_stopped(collector.run(caches.inventory() if caches else None), stop)
        except KubeError as exc:
            log.error("collection failed, retried next run", extra={"reason": str(exc)})
            if config.once:
                failed.append(f"collection failed: {exc}")
        if config.once or stop.is_set():
            return
        now = time.monotonic()
        if now >= scheduled:
            scheduled = next_tick(start, config.collect_interval_secs, scheduled, now).at
        log.info("waiting for the next run (SIGUSR1: run now)", extra={"in_s": round(scheduled - now, 1)})


async def _verbosity(client: KubeClient, config: LogsCollectorSettings) -> bool:
    assert config.log_verbosity is not None
    try:
        return await raise_verbosity(
            client, config.handler_namespace, config.log_verbosity, hco=config.hco_namespace is not None
        )
    except KubeError as exc:
        log.warning("could not raise log verbosity, retried next run", extra={"reason": str(exc)})
        return False


async def _sleep_until(at: float, stop: asyncio.Event, wake: asyncio.Event) -> None:
    if time.monotonic() >= at:
        return
    waits = [asyncio.ensure_future(event.wait()) for event in (stop, wake)]
    try:
        await asyncio.wait(
            waits, timeout=max(0.0, at - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for waiter in waits:
            waiter.cancel()


async def _until_stopped(run: Coroutine[Any, Any, Any], stop: asyncio.Event) -> None:
    """Await ``run``, cancelling it if a stop signal comes first."""
    task = asyncio.ensure_future(run)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if not task.cancelled():
        task.result()
