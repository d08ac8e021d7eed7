"""What can go wrong when talking to the API, as exceptions a component can handle per VM.

Every failure of an API call surfaces as a ``KubeError`` subclass, never as an httpx, kr8s or
websocket exception: components catch ``KubeError`` around the work for one VM or one node and go
on with the others.
"""

from __future__ import annotations


class KubeError(Exception):
    """An API call failed; ``status`` is the HTTP status when there was a response."""

    status: int | None = None

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class KubeNotFound(KubeError):
    """404: the object (a pod that vanished, a VMI deleted meanwhile) or the path does not exist."""

    status = 404


class KubeRejected(KubeError):
    """A 4xx other than 404 and 429: the request itself is wrong or forbidden; retrying cannot help."""


class KubeUnavailable(KubeError):
    """Connection errors, timeouts, 429 or 5xx that persisted through every retry."""


class ExecFailed(KubeError):
    """The exec session could not be run to completion (protocol error, stream cut)."""


class LineTooLong(KubeError):
    """A streamed answer (a watch) sent a line longer than the client accepts; the stream is closed."""
