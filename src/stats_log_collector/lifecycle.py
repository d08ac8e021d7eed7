"""Running a component until SIGTERM, SIGINT or SIGHUP, then stopping it cleanly within a deadline.

Kubernetes sends SIGTERM and waits terminationGracePeriodSeconds (30 s by default) before SIGKILL; we
promise to be gone within 5 s. A component receives a ``stop`` event and is expected to finish its
current step, flush its state and return. If it has not returned after ``grace`` seconds, its task is
cancelled, which still runs its ``finally`` blocks. A second signal cancels at once.

SIGHUP (the terminal or an ssh session closing) stops like SIGTERM: its default action would end the
process at once, without the flush.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Component = Callable[[asyncio.Event], Awaitable[None]]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


async def run_until_signalled(component: Component, grace: float = 4.0) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    task = asyncio.ensure_future(component(stop))

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("second signal, cancelling now", extra={"signal": name})
            task.cancel()
            return
        log.info("stopping", extra={"signal": name})
        stop.set()
        loop.call_later(grace, _cancel_if_running, task, grace)

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await task
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def _cancel_if_running(task: asyncio.Future[None], grace: float) -> None:
    if not task.done():
        log.warning("did not stop in time, cancelling", extra={"grace_s": grace})
        task.cancel()


def run(component: Component, grace: float = 4.0) -> None:
    """Run ``component`` on a new event loop until it returns or a stop signal ends it."""
    asyncio.run(run_until_signalled(component, grace))
