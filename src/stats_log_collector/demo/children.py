"""A component (virtlet-log, memstat) run as its own ``stats-log-collector`` process.

The demo runs each component exactly as a node would, configured only through its public settings
(flags and environment variables), so what the demo shows is what gets deployed. Each child has its own
session (Ctrl-C reaches only the demo, which stops them in order), its stderr in a log file, and a
pidfile so a later run can stop one left behind by a demo killed with -9.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .processes import stop_stale

# Variables that would point a child at a real cluster; the demo has none.
KUBE_VARIABLES = ("KUBECONFIG", "KUBE_API_URL", "KUBE_CONTEXT", "KUBERNETES_SERVICE_HOST")


def component_argv(command: str, args: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "stats_log_collector", command, *args]


class Child:
    """``args`` are the component's flags; a stale process is stopped only if its argv holds ``marker``."""

    def __init__(
        self,
        command: str,
        args: Sequence[str],
        env: Mapping[str, str],
        log_file: Path,
        pidfile: Path,
        marker: str,
    ) -> None:
        self.command = command
        self.args = list(args)
        self.marker = marker
        self.env = dict(env)
        self.log_file = log_file
        self.pidfile = pidfile
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        stop_stale(self.pidfile, self.marker)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                component_argv(self.command, self.args),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.pidfile.write_text(f"{self.process.pid}\n")

    def exit_code(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (components stop within 5 s, state flushed), SIGKILL after ``timeout``."""
        if self.process is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
        return code

    def kill(self) -> None:
        """SIGKILL: what a crash or the OOM killer does. The pidfile stays, as it would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def child_environment(settings: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: ours without the cluster variables, plus ``settings``."""
    environ = {k: v for k, v in (os.environ if base is None else base).items() if k not in KUBE_VARIABLES}
    environ.update(settings)
    return environ
