"""Decoding the Kubernetes exec stream (channel.k8s.io WebSocket subprotocols, v4 and v5).

Each binary message starts with one channel byte: 1 stdout, 2 stderr, 3 the final ``Status`` object,
which carries the exit code as a cause of reason ``ExitCode`` when the command failed. v5 adds a
close-channel message (255) that we only need for stdin, which we never send. Pure, so it is tested
without a server.
"""

from __future__ import annotations

import json

from .errors import ExecFailed
from .models import ExecResult

SUBPROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDOUT, STDERR, ERROR, CLOSE = 1, 2, 3, 255


class ExecStream:
    """Collects the frames of one exec session until its Status arrives."""

    def __init__(self, max_output_bytes: int) -> None:
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._max = max_output_bytes
        self.exit_code: int | None = None

    def feed(self, frame: bytes) -> bool:
        """Take one message; True once the final status has been received."""
        if not frame:
            return False
        channel, payload = frame[0], frame[1:]
        if channel == STDOUT:
            self._append(self._stdout, payload)
        elif channel == STDERR:
            self._append(self._stderr, payload)
        elif channel == ERROR:
            self.exit_code = exit_code_from_status(payload)
            return True
        elif channel != CLOSE:
            raise ExecFailed(f"exec: unexpected channel {channel}")
        return False

    def _append(self, buffer: bytearray, payload: bytes) -> None:
        if len(buffer) + len(payload) > self._max:
            raise ExecFailed(f"exec: output larger than {self._max} bytes")
        buffer += payload

    def result(self) -> ExecResult:
        if self.exit_code is None:
            raise ExecFailed("exec: stream ended without a status")
        return ExecResult(bytes(self._stdout), bytes(self._stderr), self.exit_code)


def exit_code_from_status(payload: bytes) -> int:
    """The exit code in an exec Status; a Failure with no exit code means the exec itself failed."""
    try:
        status = json.loads(payload or b"{}")
    except ValueError:
        raise ExecFailed(f"exec: unreadable status {payload[:200]!r}") from None
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or ():
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message", ""))
            except ValueError:
                break
    raise ExecFailed(f"exec: {status.get('message') or status.get('reason') or 'failed'}")
