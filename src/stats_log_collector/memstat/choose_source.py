"""The source MEMSTAT_SOURCE names, with the API client it uses (to close when memstat stops)."""

from __future__ import annotations

import logging
import socket

from ..kube import KubeClient, KubeRejected
from ..settings import KubeSettings, MemstatSettings
from .exec_source import ExecSource
from .kubelet_source import KubeletSource
from .poller import SampleSource
from .procfs_source import ProcfsSource

log = logging.getLogger(__name__)


async def make_source(
    settings: MemstatSettings, kube: KubeSettings
) -> tuple[SampleSource, KubeClient | None]:
    if settings.memstat_source == "procfs":
        try:
            client: KubeClient | None = await KubeClient.connect(kube)
        except KubeRejected as exc:
            log.info("no Kubernetes API: VMs are named from QEMU's -name", extra={"why": str(exc)})
            client = None
        node = settings.node_name or socket.gethostname()
        return ProcfsSource(settings, client, node), client
    client = await KubeClient.connect(kube)
    if settings.memstat_source == "exec":
        return ExecSource(client, settings.namespace, settings.process_names), client
    return KubeletSource(client, settings.namespace), client
