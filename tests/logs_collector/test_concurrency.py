"""Read slots (bounded, urgent readers first) and per-pod locks (dropped when unused)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator

from stats_log_collector.logs_collector.concurrency import KeyedLocks, ReadSlots, drain


async def test_slots_bound_readers_and_serve_urgent_ones_first() -> None:
    slots = ReadSlots(2)
    order: list[str] = []
    running = 0
    peak = 0
    gate = asyncio.Event()

    async def reader(name: str, urgent: bool) -> None:
        nonlocal running, peak
        async with slots.slot(urgent):
            running += 1
            peak = max(peak, running)
            order.append(name)
            await gate.wait()
            running -= 1

    first = [asyncio.create_task(reader(f"hourly-{i}", False)) for i in range(4)]
    await asyncio.sleep(0.01)
    urgent = [asyncio.create_task(reader(f"going-{i}", True)) for i in range(2)]
    await asyncio.sleep(0.01)
    assert order == ["hourly-0", "hourly-1"] and slots.waiting == 4
    gate.set()
    await asyncio.gather(*first, *urgent)
    assert order[2:4] == ["going-0", "going-1"] and peak == 2


async def test_a_cancelled_waiter_neither_leaks_nor_loses_a_slot() -> None:
    slots = ReadSlots(1)
    gate = asyncio.Event()

    async def hold() -> None:
        async with slots.slot():
            await gate.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter.cancel()
    gate.set()
    await asyncio.gather(holder, waiter, return_exceptions=True)
    async with asyncio.timeout(1), slots.slot():  # the slot came back
        await asyncio.sleep(0)
    assert slots.waiting == 0


async def test_pod_locks_exclude_per_key_and_are_dropped_when_unused() -> None:
    locks = KeyedLocks()
    inside: list[str] = []

    async def use(key: str, tag: str) -> None:
        async with locks.hold(key):
            inside.append(f"{tag}+")
            await asyncio.sleep(0.01)
            inside.append(f"{tag}-")

    await asyncio.gather(use("a", "1"), use("a", "2"), use("b", "3"))
    assert inside.index("1-") < inside.index("2+")  # same pod: one after the other
    assert inside.index("3+") < inside.index("1-")  # another pod: at the same time
    assert len(locks) == 0


async def test_drain_creates_work_only_as_workers_free_up() -> None:
    created = finished = peak = 0

    async def job() -> None:
        nonlocal finished
        await asyncio.sleep(0.001)
        finished += 1

    def jobs() -> Iterator[Awaitable[None]]:
        nonlocal created, peak
        for _ in range(50):
            created += 1
            peak = max(peak, created - finished)  # made and not done yet
            yield job()

    await drain(jobs(), workers=3)
    assert created == finished == 50 and peak == 3
