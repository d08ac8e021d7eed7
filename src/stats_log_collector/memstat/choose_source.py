"""The source MEMSTAT_SOURCE names, with the API client it uses (to close when memstat stops) and the
inventory of VMs it gets its targets from (to run next to the poller)."""

from __future__ import annotations

import logging
import socket

from ..kube import KubeClient, KubeRejected
from ..settings import KubeSettings, MemstatSettings
from .exec_source import ExecSource
from .inventory import Inventory
from .kubelet_source import KubeletSource
from .poller import SampleSource
from .procfs_source import ProcfsSource

log = logging.getLogger(__name__)


async def make_source(
    settings: MemstatSettings, kube: KubeSettings
) -> tuple[SampleSource, KubeClient | None, Inventory | None]:
    # A poll waits for the first lists as long as one API call may take, retries included.
    sync_timeout = kube.kube_request_timeout_secs * (kube.kube_retries + 1)
    if settings.memstat_source == "procfs":
        try:
            client: KubeClient | None = await KubeClient.connect(kube)
        except KubeRejected as exc:
            log.info("no Kubernetes API: VMs are named from QEMU's -name", extra={"why": str(exc)})
            client = None
        node = settings.node_name or socket.gethostname()
        pods = (
            None
            if client is None
            else Inventory(client, settings.namespace, node=node, vmis=False, sync_timeout=sync_timeout)
        )
        return ProcfsSource(settings, pods, node), client, pods
    client = await KubeClient.connect(kube)
    inventory = Inventory(client, settings.namespace, sync_timeout=sync_timeout)
    if settings.memstat_source == "exec":
        return ExecSource(client, inventory, settings.process_names), client, inventory
    return KubeletSource(client, inventory), client, inventory
