"""Kubernetes access shared by every component: one client, typed answers, one failure contract.

``KubeClient`` (client.py) is the only place that speaks HTTP to the API; ``models`` holds the typed
objects it returns, ``errors`` the exceptions it raises, ``retry`` the pure retry policy,
``watch`` the caches kept from a list and a watch (``ObjectCache``).
"""

from .client import KubeClient, match_launcher_pods
from .errors import ExecFailed, KubeError, KubeNotFound, KubeRejected, KubeUnavailable
from .models import ExecResult, Pod, Vmi
from .watch import JSON, ObjectCache, OnChange

__all__ = [
    "JSON",
    "ExecFailed",
    "ExecResult",
    "KubeClient",
    "KubeError",
    "KubeNotFound",
    "KubeRejected",
    "KubeUnavailable",
    "ObjectCache",
    "OnChange",
    "Pod",
    "Vmi",
    "match_launcher_pods",
]
