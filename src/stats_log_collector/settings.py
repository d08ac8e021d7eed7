"""Every setting of every component, grouped as the components use them.

The variable names are the original stats-logs-collector's (github.com/fossedihelm/stats-logs-collector:
DATA_DIR, NAMESPACE, POLL_INTERVAL_SECS, HTTP_PORT, ...) so that existing manifests keep working; each is
also a ``--kebab-case`` flag. A subcommand is given the groups it needs (``COMMANDS`` in cli.py), and
``--help`` lists exactly those.

Two components read the same variable with different defaults (DATA_DIR is ``/data`` for memstat and
``/logs-collector`` for logs-collector, as in the original), so each group declares its own field.

How settings reach the code, one rule for every component:

- Every setting is declared here, in the group of the component that reads it; nothing else reads the
  environment for a setting. Only cli.py loads settings (variables, flags, defaults, validation).
- cli.py calls a component's ``command.run()`` with the groups that component declares, e.g.
  ``memstat.command.run(settings.memstat, settings.kube, settings.kubelet)``.
- Below ``run()``, a class or function takes one of the groups ``run()`` was given (its component's
  own, e.g. ``ProcfsSource(MemstatSettings, ...)``, or ``KubeSettings`` to connect to the API) or plain
  values; it never looks a setting up (no ``os.environ``, no settings of its own) and never takes a
  group ``run()`` was not given. ``logsetup.configure`` takes ``LoggingSettings`` from cli.py alike.
- A default that depends on the machine (NODE_NAME: the host name) is declared as unset, described in
  the help, and filled in by the code that uses the value.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .config import (
    Derived,
    boolean,
    byte_size,
    choice,
    name_list,
    name_prefix,
    namespace_name,
    namespaces,
    node_address_types,
    non_negative_int,
    optional_namespace,
    optional_non_negative_int,
    optional_path,
    optional_port,
    optional_str,
    path,
    path_or_word,
    port,
    positive_float,
    positive_int,
    setting,
)

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclasses.dataclass(frozen=True)
class LoggingSettings:
    """The tool's own logs: stderr, one line per event."""

    log_level: str = setting("LOG_LEVEL", "info", "level of the tool's own logs", choice(*LOG_LEVELS))
    log_format_json: bool = setting(
        "LOG_FORMAT_JSON", False, "write the tool's own logs as JSON lines", boolean
    )


@dataclasses.dataclass(frozen=True)
class KubeSettings:
    """How to reach the Kubernetes API: explicit URL, else KUBECONFIG/~/.kube/config, else in-cluster."""

    kube_api_url: str | None = setting(
        "KUBE_API_URL", None, "API server URL (overrides kubeconfig server)", optional_str
    )
    kubeconfig: Path | None = setting(
        "KUBECONFIG", None, "kubeconfig file (default ~/.kube/config, then in-cluster)", optional_path
    )
    kube_context: str | None = setting("KUBE_CONTEXT", None, "kubeconfig context to use", optional_str)
    kube_request_timeout_secs: float = setting(
        "KUBE_REQUEST_TIMEOUT_SECS", 30.0, "timeout of one API request (seconds)", positive_float
    )
    kube_retries: int = setting(
        "KUBE_RETRIES",
        5,
        "retries of an API call on connection errors, 429 and 5xx (with backoff and jitter)",
        non_negative_int,
    )


@dataclasses.dataclass(frozen=True)
class KubeletSettings:
    """How memstat's kubelet source reaches each node's kubelet (its Summary API)."""

    # direct: https://<node address>:<kubelet port>/stats/summary, authorized as `get nodes/stats`, as
    # metrics-server does; proxy: the API server's /api/v1/nodes/<node>/proxy/, which needs `get
    # nodes/proxy`, a permission that also allows exec in every pod of the node (kubernetes#83465).
    kubelet_access: str = setting(
        "KUBELET_ACCESS",
        "direct",
        "how to reach kubelets: direct (needs get nodes/stats), or proxy through the API server "
        "(needs get nodes/proxy: see the README before choosing it)",
        choice("direct", "proxy"),
    )
    kubelet_address_types: tuple[str, ...] = setting(
        "KUBELET_ADDRESS_TYPES",
        ("InternalIP", "ExternalIP", "Hostname"),
        "which Node address to connect to, in order of preference (metrics-server's "
        "--kubelet-preferred-address-types)",
        node_address_types,
    )
    kubelet_ca_file: Path | None = setting(
        "KUBELET_CA_FILE",
        None,
        "CA that signed the kubelets' serving certificates (default: the cluster CA of the "
        "ServiceAccount or kubeconfig)",
        optional_path,
    )
    kubelet_insecure_tls: bool = setting(
        "KUBELET_INSECURE_TLS",
        False,
        "do not verify the kubelets' serving certificates (self-signed ones): anyone on the path can "
        "read the token",
        boolean,
    )


@dataclasses.dataclass(frozen=True)
class MemstatSettings:
    """memstat: RSS of every VM, sampled every POLL_INTERVAL_SECS, kept in a CSV and served over HTTP."""

    data_dir: Path = setting("DATA_DIR", Path("/data"), "where mem-stats.csv is kept", path, ensure_dir=True)
    namespace: tuple[str, ...] = setting(
        "NAMESPACE", ("default",), "namespace(s) of the VMs: a comma-separated list, or * for all", namespaces
    )
    poll_interval_secs: int = setting("POLL_INTERVAL_SECS", 5, "seconds between samples", positive_int)
    http_port: int = setting("HTTP_PORT", 8099, "port of the HTTP server (CSV, metrics, dashboard)", port)
    memstat_source: str = setting(
        "MEMSTAT_SOURCE", "kubelet", "where figures come from", choice("kubelet", "exec", "procfs")
    )
    process_names: tuple[str, ...] = setting(
        "PROCESS_NAMES",
        ("virt-launcher", "virtqemud", "virtlogd", "qemu-kvm"),
        "processes sampled by the exec and procfs sources (comma-separated)",
        name_list,
    )
    node_name: str | None = setting(
        "NODE_NAME", None, "this node's name, for the procfs source (default: the host name)", optional_str
    )
    proc_root: Path = setting("PROC_ROOT", Path("/proc"), "procfs mount read by the procfs source", path)
    procfs_pss: bool = setting(
        "PROCFS_PSS",
        True,
        "procfs source: read PSS from smaps_rollup (the costly part of a scan; false for 1,000+ VMs a node)",
        boolean,
    )
    procfs_pss_max_bytes: int = setting(
        "PROCFS_PSS_MAX_BYTES",
        32 * 1024**3,
        "procfs source: no PSS for a process with more RSS (reading it can stall a large guest)",
        byte_size,
    )
    csv_format: str = setting(
        "CSV_FORMAT",
        "standard",
        "CSV columns: standard, or legacy (the original's)",
        choice("standard", "legacy"),
    )
    max_csv_bytes: int = setting(
        "MAX_CSV_BYTES",
        1024**3,
        "rotate the CSVs to gzip archives past this size (4/5 mem-stats.csv, 1/5 vm-stats.csv)",
        byte_size,
    )
    max_archive_bytes: int = setting(
        "MAX_ARCHIVE_BYTES",
        4 * 1024**3,
        "drop the oldest archives past this total size (4/5 mem-stats, 1/5 vm-stats)",
        byte_size,
    )
    logs_dir: Path = setting(
        "LOGS_DIR",
        Derived(lambda values: values["data_dir"] / "logs", "$DATA_DIR/logs"),
        "logs-collector's output, browsable under /logs/",
        path,
    )


@dataclasses.dataclass(frozen=True)
class LogsCollectorSettings:
    """logs-collector: every COLLECT_INTERVAL_SECS, each VM's launcher and handler logs since last time."""

    data_dir: Path = setting(
        "DATA_DIR", Path("/logs-collector"), "a folder per VM is written here", path, ensure_dir=True
    )
    namespace: tuple[str, ...] = setting(
        "NAMESPACE", ("default",), "namespace(s) of the VMs: a comma-separated list, or * for all", namespaces
    )
    collect_interval_secs: int = setting(
        "COLLECT_INTERVAL_SECS", 3600, "seconds between collections", positive_int
    )
    kubevirt_namespace: str = setting(
        "KUBEVIRT_NAMESPACE", "kubevirt", "namespace of virt-handler and the KubeVirt CR", namespace_name
    )
    hco_namespace: str | None = setting(
        "HCO_NAMESPACE",
        None,
        "namespace of HyperConverged (when set, used instead of KUBEVIRT_NAMESPACE)",
        optional_namespace,
    )
    retention_hours: int = setting("RETENTION_HOURS", 168, "remove files older than this", positive_int)
    max_data_bytes: int = setting(
        "MAX_DATA_BYTES", 8 * 1024**3, "remove the oldest files past this total size", byte_size
    )
    collect_concurrency: int = setting(
        "COLLECT_CONCURRENCY",
        8,
        "log streams read at once, runs and early collections together",
        positive_int,
    )
    log_verbosity: int | None = setting(
        "LOG_VERBOSITY",
        None,
        "raise virt-launcher/virt-handler verbosity to N (patches the CR)",
        optional_non_negative_int,
    )
    once: bool = setting("ONCE", False, "run one collection and exit", boolean, flag_only=True)

    @property
    def handler_namespace(self) -> str:
        """Where virt-handler runs: HCO deploys KubeVirt in its own namespace."""
        return self.hco_namespace or self.kubevirt_namespace


@dataclasses.dataclass(frozen=True)
class VirtletLogSettings:
    """virtlet-log: raw VM console files rewritten where kubelet reads container logs."""

    # VIRTLET_VM_LOG_LOCATION is what Virtlet's own container called the folder (and "pty" when unset);
    # Virtlet's virtlet-log read the same folder as VIRTLET_VM_LOGS (Mirantis/virtlet v0.8.2,
    # cmd/virtlet_log/virtlet_log.go: main; pkg/libvirttools/virtualization.go: vmLogLocation).
    virtlet_vm_log_location: str = setting(
        "VIRTLET_VM_LOG_LOCATION",
        "/var/log/vms",
        "raw console logs; 'pty' means there are none",
        path_or_word,
        aliases=("VIRTLET_VM_LOGS",),
    )
    kubernetes_pod_logs: Path = setting(
        "KUBERNETES_POD_LOGS", Path("/var/log/pods"), "where kubelet reads container logs", path
    )
    sleep_seconds: int = setting(
        "SLEEP_SECONDS", 10, "period of the full rescan backing up inotify", positive_int
    )
    log_format: str = setting("LOG_FORMAT", "json", "output format", choice("json", "cri"))
    state_dir: Path = setting("STATE_DIR", Path("/var/lib/virtlet-log"), "checkpoints", path, ensure_dir=True)
    create_pod_log_dirs: bool = setting(
        "CREATE_POD_LOG_DIRS",
        False,
        "create missing pod log directories instead of waiting for kubelet",
        boolean,
    )
    metrics_port: int = setting("METRICS_PORT", 0, "Prometheus metrics port (0: off)", optional_port)

    @property
    def vm_log_root(self) -> Path:
        return Path(self.virtlet_vm_log_location).expanduser().absolute()


@dataclasses.dataclass(frozen=True)
class ConsoleTailSettings:
    """console-tail: one console log to stdout, following rotation, resuming after restarts."""

    file: Path | None = setting(
        "CONSOLE_LOG_FILE", None, "the console log to follow (required)", optional_path, flag="--file"
    )
    state_file: Path | None = setting(
        "STATE_FILE", None, "checkpoint, to resume after a restart", optional_path
    )


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """demo: real QEMU VMs on this machine, watched by virtlet-log and memstat."""

    demo_dir: Path = setting("DEMO_DIR", Path("demo-data"), "where VMs, logs and data are kept", path)
    demo_vms: int = setting("DEMO_VMS", 3, "number of VMs to boot", positive_int)
    demo_vm_prefix: str = setting(
        "DEMO_VM_PREFIX", "demo-vm", "the VMs' names: the prefix, then 1, 2, 3...", name_prefix
    )
    http_port: int = setting("HTTP_PORT", 8099, "port of the dashboard", port)
    demo_kernel: Path | None = setting(
        "DEMO_KERNEL",
        None,
        "kernel to boot the VMs with (default: linux-image-cloud-amd64's, fetched with apt)",
        optional_path,
    )
