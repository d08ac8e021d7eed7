"""``python -m kubevirt_test_cluster``: serve a populated test cluster until interrupted.

For trying a collector, kubectl or a browser against a KubeVirt-shaped API by hand, or for
benchmarks that run a collector as a separate process. It prints the URL and the kubeconfig
path, then serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from .cluster import KubeVirtCluster
from .populate import Population


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kubevirt_test_cluster", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=Path(tempfile.gettempdir()) / "kubevirt-test-cluster.kubeconfig",
    )
    parser.add_argument("--namespaces", default="vms", help="comma-separated VM namespaces")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--vms", type=int, default=5, help="VMs per namespace")
    parser.add_argument(
        "--log-lines", type=int, default=20, help="lines per container and per VM in handlers"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def stop_on_signal() -> threading.Event:
    """An event set by SIGINT or SIGTERM; installed before the URL is printed, so a caller that reads it
    and signals at once is never too early."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def print_examples(kubeconfig: Path, population: Population) -> None:
    """What to type next: the real kubectl against this cluster."""
    if not population.vmis:
        return
    vmi = population.vmis[0]
    pod = population.launcher_of(vmi)
    print("try, in another terminal (Ctrl-C here stops the cluster):")
    print(f"  export KUBECONFIG={kubeconfig}")
    print("  kubectl get vmi -A")
    print(f"  kubectl get pods -n {vmi.namespace} -o wide")
    print(f"  kubectl logs -n {vmi.namespace} {pod.name} --timestamps")
    print("  kubectl logs -n kubevirt -l kubevirt.io=virt-handler --tail=3")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    namespaces = [name for name in args.namespaces.split(",") if name]
    stop = stop_on_signal()
    with KubeVirtCluster(host=args.host, port=args.port, seed=args.seed) as cluster:
        population = cluster.populate(namespaces, args.nodes, args.vms, args.log_lines)
        kubeconfig = cluster.write_kubeconfig(args.kubeconfig)
        print(f"url: {cluster.url}")
        print(f"kubeconfig: {kubeconfig}")
        print(f"{len(population.vmis)} VMIs on {len(population.nodes)} nodes in {', '.join(namespaces)}")
        print_examples(kubeconfig, population)
        sys.stdout.flush()
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
