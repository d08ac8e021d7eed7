"""Kubernetes access shared by every component: one client, typed answers, one failure contract.

``KubeClient`` (client.py) is the only place that speaks HTTP to the API; ``models`` holds the typed
objects it returns, ``errors`` the exceptions it raises, ``retry`` the pure retry policy.
"""

from .client import KubeClient, match_launcher_pods
from .errors import ExecFailed, KubeError, KubeNotFound, KubeRejected, KubeUnavailable
from .models import ExecResult, Pod, Vmi

__all__ = [
    "ExecFailed",
    "ExecResult",
    "KubeClient",
    "KubeError",
    "KubeNotFound",
    "KubeRejected",
    "KubeUnavailable",
    "Pod",
    "Vmi",
    "match_launcher_pods",
]
