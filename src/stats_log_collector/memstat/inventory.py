"""The VMs memstat samples, kept from watches: what every source asks before each poll.

Listing every VMI and launcher pod at every poll costs about 5 MB of JSON per 1,000 VMs, each poll, for
objects that rarely change. ``Inventory`` keeps them in two ``ObjectCache``s (one list, then watch
events; kube/watch.py) and hands the sources the same answers the lists gave: the VMs with their
active launcher pods (``vm_targets``, built by the kubelet source's pure ``launchers``), or the launcher
pods alone (the procfs source, which needs only its own node's: a field selector keeps the others out).

Models are rebuilt from the caches only after a change, so a poll in a quiet cluster does no parsing.
A poll that comes before the first lists are in waits for them, up to ``sync_timeout``; then it fails
as a poll whose list failed used to (``KubeUnavailable``: counted, logged, the next tick tries again).
An object the models cannot be made of fails that object (logged, counted), not the poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from ..kube import JSON, KubeClient, KubeUnavailable, ObjectCache, Pod, Vmi
from ..kube.slim import slim_pod, slim_vmi
from .kubelet_source import launchers
from .sample import VmPod
from .vm_figures import VmMemory

Targets = list[tuple[VmPod, VmMemory]]


class VmInventory(Protocol):
    """Where sources get their targets (``Inventory``; a benchmark's list-per-poll reference)."""

    async def vm_targets(self) -> Targets: ...

    async def launcher_pods(self) -> list[Pod]: ...


class Inventory:
    """VMIs (unless ``vmis=False``) and launcher pods of ``namespaces``; with ``node``, only that
    node's launcher pods."""

    def __init__(
        self,
        client: KubeClient,
        namespaces: Sequence[str],
        *,
        node: str | None = None,
        vmis: bool = True,
        sync_timeout: float = 60.0,
        **cache_options: Any,
    ) -> None:
        # slim objects: what the models read (at 10,000 VMs the full ones are some 250 MB)
        self._vmis = client.vmi_cache(namespaces, transform=slim_vmi, **cache_options) if vmis else None
        self._pods = client.launcher_pod_cache(namespaces, node=node, transform=slim_pod, **cache_options)
        self._sync_timeout = sync_timeout
        self._changes = 0  # bumped by every change: the models are rebuilt when it moved
        self._built_at = -1
        self._targets: Targets = []
        self._pod_models: list[Pod] = []
        for cache in self.caches:
            cache.subscribe(self._changed)

    @property
    def caches(self) -> list[ObjectCache]:
        return [cache for cache in (self._vmis, self._pods) if cache is not None]

    @property
    def bad_objects(self) -> int:
        """Objects no model could be made of (each logged)."""
        return sum(cache.unreadable for cache in self.caches)

    @property
    def synced(self) -> bool:
        return all(cache.synced for cache in self.caches)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the caches current until ``stop`` is set."""
        await asyncio.gather(*(cache.run(stop) for cache in self.caches))

    async def wait_synced(self) -> None:
        """Return once the first lists are in; ``KubeUnavailable`` after ``sync_timeout`` seconds."""
        try:
            async with asyncio.timeout(self._sync_timeout):
                for cache in self.caches:
                    await cache.wait_synced()
        except TimeoutError:
            waiting = ", ".join(cache.what for cache in self.caches if not cache.synced)
            raise KubeUnavailable(f"{waiting} not listed yet after {self._sync_timeout:g} s") from None

    async def vm_targets(self) -> Targets:
        """Each VM with its active, running launcher pod, and what the API says of its memory."""
        await self._build()
        return self._targets

    async def launcher_pods(self) -> list[Pod]:
        await self._build()
        return self._pod_models

    def _changed(self, old: JSON | None, new: JSON | None) -> None:
        self._changes += 1

    async def _build(self) -> None:
        await self.wait_synced()
        if self._built_at == self._changes:
            return
        self._built_at = self._changes
        self._pod_models = self._pods.parsed(Pod.from_json)
        if self._vmis is not None:
            self._targets = launchers(self._vmis.parsed(Vmi.from_json), self._pod_models)
