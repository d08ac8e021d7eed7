"""What a run plans from, and where it comes from while running: three watch caches.

``Caches`` holds the ``kube.ObjectCache`` of the VMIs, of the launcher pods and of the virt-handler
pods; ``inventory()`` turns their snapshots into the typed objects ``plan`` reads. An object the models
cannot take (a hostile API answer) is skipped alone: logged, counted, never the run.

The caches keep slim objects (``kube.slim``: what the models and ``triggers`` read): at 10,000 VMs the
full pods and VMIs alone would be some 250 MB.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ..kube import KubeClient, Pod, Vmi
from ..kube.client import handlers_by_node
from ..kube.slim import slim_pod, slim_vmi
from ..kube.watch import ObjectCache


@dataclasses.dataclass(frozen=True)
class Inventory:
    """The VMIs, their launcher pods, the virt-handler pod of each node."""

    vmis: Sequence[Vmi]
    launcher_pods: Sequence[Pod]
    handlers: Mapping[str, Pod]


@dataclasses.dataclass
class Caches:
    vmis: ObjectCache
    launcher_pods: ObjectCache
    handler_pods: ObjectCache

    @classmethod
    def of(
        cls, client: KubeClient, namespaces: Sequence[str], handler_namespace: str, **options: Any
    ) -> Caches:
        """The three caches, keeping slim objects (``options``: the caches', e.g. a retry policy)."""
        return cls(
            client.vmi_cache(namespaces, transform=slim_vmi, **options),
            client.launcher_pod_cache(namespaces, transform=slim_pod, **options),
            client.handler_pod_cache(handler_namespace, transform=slim_pod, **options),
        )

    @property
    def all(self) -> tuple[ObjectCache, ...]:
        return (self.vmis, self.launcher_pods, self.handler_pods)

    async def wait_synced(self) -> None:
        await asyncio.gather(*(cache.wait_synced() for cache in self.all))

    @property
    def bad_objects(self) -> int:
        """Objects the models could not take (each logged)."""
        return sum(cache.unreadable for cache in self.all)

    def inventory(self) -> Inventory:
        """The caches' objects now, typed (no API call); a hostile object is left out alone."""
        vmis = self.vmis.parsed(Vmi.from_json)
        pods = self.launcher_pods.parsed(Pod.from_json)
        handlers = self.handler_pods.parsed(Pod.from_json)
        return Inventory(vmis, pods, handlers_by_node(handlers))
