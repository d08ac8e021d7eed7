"""A realistic KubeVirt cluster in one call, for end-to-end tests and benchmarks.

A collector's hard cases only show up at scale and in mixed data: several namespaces with
the same VM names, many VMs per node whose lines interleave in one virt-handler log, plain-text
lines among JSON ones, an hour of history to window. ``populate`` builds all of it in a single
hop onto the server loop: nodes with a virt-handler each, VMIs spread round-robin, their launcher
pods with processes and memory figures, and timestamped logs over the last hour.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .builder import Builder, PodRef, VmiRef
from .container_exec import launcher_processes
from .logs import NANOS, handler_line, klog_line, launcher_line
from .objects import LAUNCHER_SHAPE_VERSION
from .stats import ContainerMemory, MiB

WINDOW_SECONDS = 3600

HANDLER_MESSAGES = (
    ("Processing event {ns}/{name}", "vm.go:1700"),
    ("VMI is in phase: Running | Domain status: Running, reason: Unknown", "vm.go:1702"),
    ("Synchronization loop succeeded.", "vm.go:2063"),
    ("No update processing required", "vm.go:1891"),
    ("Domain status: Running, reason: Unknown", "vm.go:1950"),
)
HANDLER_NODE_MESSAGES = (
    ("Updating cluster config from KubeVirt to resource version 4567", "configuration.go:375"),
    ("certificate with common name 'kubevirt.io:system:node:virt-handler' retrieved.", "cert-manager.go:198"),
    ("Node heartbeat succeeded", "heartbeat.go:108"),
)
KLOG_MESSAGES = (
    (
        "Listing and watching *v1.VirtualMachineInstance from pkg/controller/virtinformers.go:351",
        "reflector.go:368",
    ),
    ("Caches populated for *v1.KubeVirt from pkg/controller/virtinformers.go:351", "reflector.go:376"),
)
LAUNCHER_MESSAGES = (
    ("Domain started.", "manager.go:1140"),
    ("Synced vmi", "server.go:208"),
    ("Guest agent is connected", "agent_poller.go:295"),
    ("Domain name event: default_vm Running", "client.go:435"),
    ("Updating domain XML", "manager.go:980"),
)
CONSOLE_MESSAGES = (
    "[  OK  ] Started systemd-journald.service - Journal Service.",
    "[  OK  ] Reached target network-online.target - Network is Online.",
    "cloud-init[812]: Cloud-init v. 24.1 running 'modules:final'",
    "Fedora Linux 41 (Cloud Edition)",
    "Kernel 6.11.4-301.fc41.x86_64 on an x86_64 (ttyS0)",
    "{name} login: ",
)


@dataclass
class Population:
    namespaces: list[str]
    nodes: list[str]
    vmis: list[VmiRef] = field(default_factory=list)
    launcher_pods: list[PodRef] = field(default_factory=list)
    handler_pods: dict[str, PodRef] = field(default_factory=dict)  # by node

    def launcher_of(self, vmi: VmiRef) -> PodRef:
        return next(
            pod
            for pod in self.launcher_pods
            if pod.namespace == vmi.namespace and pod.name.startswith(f"virt-launcher-{vmi.name}-")
        )


def _stamps(count: int, start: int, end: int, builder: Builder) -> list[int]:
    """``count`` sorted timestamps spread over ``[start, end)`` with nanosecond jitter."""
    if count <= 0:
        return []
    step = (end - start) // count
    return [start + i * step + builder.rng.randrange(max(1, step)) for i in range(count)]


def populate(
    builder: Builder,
    namespaces: Sequence[str],
    nodes: int,
    vms_per_namespace: int,
    log_lines: int,
    *,
    handler_namespace: str = "kubevirt",
    kubevirt_version: str = LAUNCHER_SHAPE_VERSION,
) -> Population:
    """Build the cluster; ``log_lines`` is per launcher container and per VM in its node's handler log.

    Launcher pods take the shape of ``kubevirt_version`` (see ``objects.launcher_pod``)."""
    width = max(2, len(str(nodes)))
    population = Population(list(namespaces), [f"node-{i:0{width}d}" for i in range(1, nodes + 1)])
    end = time.time_ns()
    start = end - WINDOW_SECONDS * NANOS
    for node in population.nodes:
        builder.add_node(node)
        population.handler_pods[node] = builder.add_handler_pod(node, handler_namespace)
    builder.add_kubevirt_cr(handler_namespace)
    serial = 0
    for namespace in namespaces:
        builder.add_namespace(namespace)
        for index in range(vms_per_namespace):
            node = population.nodes[serial % len(population.nodes)] if population.nodes else "node-01"
            serial += 1
            vmi = builder.add_vmi(namespace, f"vm-{index:03d}", node)
            pod = builder.add_launcher_pod(vmi, kubevirt_version=kubevirt_version)
            population.vmis.append(vmi)
            population.launcher_pods.append(pod)
            _fill_launcher(builder, vmi, pod, log_lines, start, end)
    for node, handler in population.handler_pods.items():
        on_node = [vmi for vmi in population.vmis if vmi.node == node]
        _fill_handler(builder, handler, on_node, log_lines, start, end)
    return population


def _fill_launcher(builder: Builder, vmi: VmiRef, pod: PodRef, lines: int, start: int, end: int) -> None:
    rng = builder.rng
    compute = [
        (stamp, launcher_line(msg, uid=vmi.uid, time_nanos=stamp, pos=pos))
        for stamp, (msg, pos) in zip(
            _stamps(lines, start, end, builder),
            (LAUNCHER_MESSAGES[i % len(LAUNCHER_MESSAGES)] for i in range(lines)),
            strict=True,
        )
    ]
    console = [
        (
            stamp,
            f"[{(stamp - start) / NANOS:12.6f}] "
            + CONSOLE_MESSAGES[i % len(CONSOLE_MESSAGES)].format(name=vmi.name),
        )
        for i, stamp in enumerate(_stamps(lines, start, end, builder))
    ]
    if "compute" in pod.containers:
        builder.append_lines(pod.namespace, pod.name, "compute", compute)
        rss = rng.randrange(180, 420) * MiB
        builder.set_memory(pod.namespace, pod.name, "compute", ContainerMemory.of(rss, rss + 24 * MiB))
        builder.api.processes[(pod.namespace, pod.name)] = launcher_processes(
            vmi.name, rss // 1024 - 123_000, namespace=pod.namespace
        )
    if "guest-console-log" in pod.containers:
        builder.append_lines(pod.namespace, pod.name, "guest-console-log", console)
        rss = rng.randrange(8, 14) * MiB
        builder.set_memory(
            pod.namespace, pod.name, "guest-console-log", ContainerMemory.of(rss, rss + 2 * MiB)
        )


def _fill_handler(
    builder: Builder, handler: PodRef, vmis: list[VmiRef], lines: int, start: int, end: int
) -> None:
    """Interleaved lines about every VM on the node, plus node-level JSON and plain klog lines."""
    entries: list[tuple[int, str]] = []
    for vmi in vmis:
        for i, stamp in enumerate(_stamps(lines, start, end, builder)):
            msg, pos = HANDLER_MESSAGES[i % len(HANDLER_MESSAGES)]
            text = msg.format(ns=vmi.namespace, name=vmi.name)
            entries.append(
                (
                    stamp,
                    handler_line(
                        text, name=vmi.name, namespace=vmi.namespace, uid=vmi.uid, time_nanos=stamp, pos=pos
                    ),
                )
            )
    extra = max(2, lines // 5)
    for i, stamp in enumerate(_stamps(extra, start, end, builder)):
        if i % 2:
            msg, pos = HANDLER_NODE_MESSAGES[i % len(HANDLER_NODE_MESSAGES)]
            entries.append((stamp, handler_line(msg, time_nanos=stamp, pos=pos)))
        else:
            msg, pos = KLOG_MESSAGES[i % len(KLOG_MESSAGES)]
            entries.append((stamp, klog_line(msg, time_nanos=stamp, source=pos)))
    entries.sort(key=lambda entry: entry[0])
    builder.append_lines(handler.namespace, handler.name, "virt-handler", entries)
    builder.set_memory(
        handler.namespace, handler.name, "virt-handler", ContainerMemory.of(180 * MiB, 210 * MiB)
    )
