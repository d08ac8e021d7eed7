"""The source MEMSTAT_SOURCE names, with what it holds open (the API client, the kubelet connections)."""

from __future__ import annotations

import contextlib
import logging
import socket

from ..kube import KubeClient, KubeRejected
from ..kube.kubelet import summary_reader
from ..settings import KubeletSettings, KubeSettings, MemstatSettings
from .exec_source import ExecSource
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
) -> SampleSource:
    """The source; what it opens is closed with ``resources``. ``failures`` counts the nodes the kubelet
    source cannot read."""
    if settings.memstat_source == "procfs":
        try:
            client: KubeClient | None = await KubeClient.connect(kube)
        except KubeRejected as exc:
            log.info("no Kubernetes API: VMs are named from QEMU's -name", extra={"why": str(exc)})
            client = None
        if client is not None:
            resources.push_async_callback(client.close)
        node = settings.node_name or socket.gethostname()
        return ProcfsSource(settings, client, node)
    client = await KubeClient.connect(kube)
    resources.push_async_callback(client.close)
    if settings.memstat_source == "exec":
        return ExecSource(client, settings.namespace, settings.process_names)
    reader = await summary_reader(client, kubelet, kube)
    resources.push_async_callback(reader.close)
    return KubeletSource(client, settings.namespace, reader=reader, failures=failures)
