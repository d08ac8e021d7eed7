"""Who may read what, when: COLLECT_CONCURRENCY read slots with urgent readers first, one reader per pod.

Early collections (a pod going, a container restarted: ``triggers``) and the hourly run share the read
slots, so a burst of a thousand pods going at once never has more than COLLECT_CONCURRENCY streams
open; the going pods' reads are urgent (the API serves them only until their grace period ends) and
pass before the hourly run's queue. One lock per pod keeps an early collection and the hourly run from
reading the same streams at the same time: the second one waits, then plans from the cursors the first
one committed, so no line is read twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Awaitable, Hashable, Iterable


class ReadSlots:
    """A semaphore of ``size`` slots whose urgent waiters are served before the others (FIFO each)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.peak = 0  # the most slots ever in use at once (for the logs and the tests)
        self._free = size
        self._waiting: dict[bool, collections.deque[asyncio.Future[None]]] = {
            True: collections.deque(),
            False: collections.deque(),
        }

    @contextlib.asynccontextmanager
    async def slot(self, urgent: bool = False) -> AsyncIterator[None]:
        await self._acquire(urgent)
        self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        if self._free > 0 and not any(self._waiting.values()):
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[urgent].append(waiter)
        try:
            await waiter  # a releasing reader handed its slot over
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed over just as we were cancelled: pass it on
            else:
                self._waiting[urgent].remove(waiter)
            raise

    def _release(self) -> None:
        for urgent in (True, False):
            queue = self._waiting[urgent]
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1

    @property
    def in_use(self) -> int:
        """Slots taken: those not free (a slot handed over to a waiter never becomes free between)."""
        return self.size - self._free

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())


class KeyedLocks:
    """One ``asyncio.Lock`` per key, dropped when nobody holds or waits for it (no growth with churn)."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


async def drain(work: Iterable[Awaitable[None]], workers: int) -> None:
    """Await every item of ``work`` with ``workers`` at a time, taking the next item only when one is
    done. ``work`` may be a generator of coroutines: each is created when it is taken, so a run over
    10,000 VMs holds a few dozen coroutines (and their jobs' state), not tens of thousands."""
    items = iter(work)

    async def worker() -> None:
        for item in items:  # one shared iterator: each item is taken once
            await item

    await asyncio.gather(*(worker() for _ in range(max(1, workers))))
