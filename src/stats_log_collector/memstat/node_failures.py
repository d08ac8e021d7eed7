"""Nodes whose kubelet could not be read: counted every poll, logged once per node and reason.

A node that fails does so poll after poll (a missing RBAC grant, a self-signed certificate, a firewall):
one warning per node per poll would bury everything else, 500 nodes deep. So a node's failure is logged
when it starts, again only when its reason changes, and its recovery once; every failed poll is
counted (``memstat_node_failures_total{node,reason}``) for alerts and graphs.
"""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger(__name__)


class NodeFailures:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()  # (node, reason) -> failed polls
        self._failing: dict[str, str] = {}  # node -> the reason last logged

    def failed(self, node: str, reason: str, error: str, vms: int) -> None:
        self.counts[(node, reason)] += 1
        if self._failing.get(node) == reason:
            return
        self._failing[node] = reason
        log.warning(
            "node skipped: its kubelet cannot be read (logged again only when the reason changes)",
            extra={"node": node, "reason": reason, "error": error, "vms": vms},
        )

    def succeeded(self, node: str) -> None:
        reason = self._failing.pop(node, None)
        if reason is not None:
            log.info("node's kubelet read again", extra={"node": node, "after": reason})

    @property
    def failing(self) -> dict[str, str]:
        """The nodes failing now, with their reason."""
        return dict(self._failing)
