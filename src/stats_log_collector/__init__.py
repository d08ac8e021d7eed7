"""stats-log-collector: memory, pod logs and serial consoles of the VMs running on Kubernetes.

Three long-running components share this package: ``memstat`` (RSS of every VM, sampled and served),
``logs-collector`` (hourly, gapless launcher and handler logs per VM) and ``virtlet-log`` (raw VM console
files rewritten where kubelet reads them). ``cli`` only wires them to their settings.
"""

__version__ = "0.1.0"
PROG = "stats-log-collector"  # the command's name, in its messages
