"""Where the demo keeps everything under DEMO_DIR: a node's layout, in one folder. Pure, no I/O.

    images/                     the guest kernel and initramfs (cached between runs)
    vms/<sandbox>/<vm>_0.log    raw serial consoles, as Virtlet's libvirt writes them
    pods/demo_<vm>_<sandbox>/<vm>/0.log   the same consoles where kubelet reads them (virtlet-log's output)
    memstat/mem-stats.csv       memstat's samples
    state/virtlet-log/          virtlet-log's checkpoints
    logs/                       each component's and each QEMU's own log
    run/                        pidfiles, so a later run can stop what a killed run left

A VM's sandbox ID (its pod UID, for Virtlet) is derived from its name, so every run of the demo uses the
same directories and virtlet-log resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

NAMESPACE = "demo"  # the pods' namespace in their kubelet log directory names
_SANDBOX_NAMESPACE = uuid.UUID("6c1f3f5e-2a57-4d7e-9a52-7f4b8d1c9e30")


@dataclasses.dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def vms(self) -> Path:
        return self.root / "vms"

    @property
    def pods(self) -> Path:
        return self.root / "pods"

    @property
    def memstat(self) -> Path:
        return self.root / "memstat"

    @property
    def virtlet_state(self) -> Path:
        return self.root / "state" / "virtlet-log"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @staticmethod
    def sandbox(vm: str) -> str:
        return str(uuid.uuid5(_SANDBOX_NAMESPACE, vm))

    def console_log(self, vm: str) -> Path:
        return self.vms / self.sandbox(vm) / f"{vm}_0.log"

    def pod_dir(self, vm: str) -> Path:
        return self.pods / f"{NAMESPACE}_{vm}_{self.sandbox(vm)}"

    def pod_log(self, vm: str) -> Path:
        """Today's kubelet layout: ``<namespace>_<pod>_<uid>/<container>/<restart>.log``."""
        return self.pod_dir(vm) / vm / "0.log"

    def pidfile(self, name: str) -> Path:
        return self.run / f"{name}.pid"
