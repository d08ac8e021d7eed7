"""The source MEMSTAT_SOURCE names, with the inventory of VMs it gets its targets from (to run next to
the poller); what it opens (the API client, the kubelet connections) is closed with the exit stack given."""

from __future__ import annotations

import contextlib
import logging
import socket

from ..kube import KubeClient, KubeRejected
from ..kube.kubelet import summary_reader
from ..settings import KubeletSettings, KubeSettings, MemstatSettings
from .exec_source import ExecSource
from .inventory import Inventory
from .kubelet_source import KubeletSource
from .node_failures import NodeFailures
from .poller import SampleSource
from .procfs_source import ProcfsSource

log = logging.getLogger(__name__)


async def make_source(
    settings: MemstatSettings,
    kube: KubeSettings,
    kubelet: KubeletSettings,
    failures: NodeFailures,
    resources: contextlib.AsyncExitStack,
) -> tuple[SampleSource, Inventory | None]:
    """The source and its inventory; what it opens is closed with ``resources``. ``failures`` counts the
    nodes the kubelet source cannot read."""
    # A poll waits for the first lists as long as one API call may take, retries included.
    sync_timeout = kube.kube_request_timeout_secs * (kube.kube_retries + 1)
    if settings.memstat_source == "procfs":
        try:
            client: KubeClient | None = await KubeClient.connect(kube)
        except KubeRejected as exc:
            log.info("no Kubernetes API: VMs are named from QEMU's -name", extra={"why": str(exc)})
            client = None
        if client is not None:
            resources.push_async_callback(client.close)
        node = settings.node_name or socket.gethostname()
        pods = (
            None
            if client is None
            else Inventory(client, settings.namespace, node=node, vmis=False, sync_timeout=sync_timeout)
        )
        return ProcfsSource(settings, pods, node), pods
    client = await KubeClient.connect(kube)
    resources.push_async_callback(client.close)
    inventory = Inventory(client, settings.namespace, sync_timeout=sync_timeout)
    if settings.memstat_source == "exec":
        return ExecSource(client, inventory, settings.process_names), inventory
    reader = await summary_reader(client, kubelet, kube)
    resources.push_async_callback(reader.close)
    return KubeletSource(client, inventory, reader=reader, failures=failures), inventory
