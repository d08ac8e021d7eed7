"""A KubeVirt test cluster: a real HTTP server on 127.0.0.1 that speaks the Kubernetes API.

A collector of VM memory and logs talks to the API through kr8s, raw HTTP and ``kubectl``; its tests
need something those clients cannot tell from a cluster: selectors that select, logs rendered like
kubelet's, exec over WebSocket, the kubelet Summary API, ``Status`` errors, faults on demand. This
package builds that on kmock's ``KubernetesEmulator`` (see :mod:`.api` for the gaps it fills) and runs
it on its own thread (see :mod:`.cluster`). ``python -m kubevirt_test_cluster`` serves one standalone.
"""

from .builder import PodRef, VmiRef
from .cluster import KubeVirtCluster
from .container_exec import CommandResult, launcher_processes, proc_status
from .faults import Fault, RequestRecord
from .logs import format_rfc3339_nano, handler_line, klog_line, kubevirt_line, launcher_line, parse_rfc3339
from .objects import VmiMemory
from .populate import Population

__all__ = [
    "CommandResult",
    "Fault",
    "KubeVirtCluster",
    "PodRef",
    "Population",
    "RequestRecord",
    "VmiMemory",
    "VmiRef",
    "format_rfc3339_nano",
    "handler_line",
    "klog_line",
    "kubevirt_line",
    "launcher_line",
    "launcher_processes",
    "parse_rfc3339",
    "proc_status",
]
