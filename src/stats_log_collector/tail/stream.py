"""A tailer's output that is a stream, such as console-tail's stdout: back-pressure, and at least once.

A stream output never buffers: each batch is written with blocking writes, so a slow reader simply holds
the tailer back and memory stays at one batch however far behind the reader is; the source file is the
buffer. After a crash nothing tells how much of the last batch reached the reader, so a stream is not
:attr:`~StreamOutput.inspectable`: the tailer writes an interrupted batch again whole and commits every batch
as soon as its write returns (at least once; docs/tailing.md).

Two ways a write ends without the batch being written are not errors to retry, so they are raised as
exceptions that are not ``OSError`` (the tailer lets them through and keeps the batch pending, its intent
saved, exactly as a crash would leave it): :class:`StreamClosed` when the reader is gone (``EPIPE``), and
:class:`WriteAborted` when the process must stop while a write is blocked on a reader that does not read.
"""

from __future__ import annotations

import os
import select
from pathlib import Path

from .fileid import FileId
from .observer import Block
from .output import OutputState

__all__ = ["StreamClosed", "StreamOutput", "WriteAborted"]


class StreamClosed(Exception):
    """The reader closed the stream (``EPIPE``): nothing written from now on can be read."""


class WriteAborted(Exception):
    """A write blocked on a slow reader was given up because the process is stopping."""


class StreamOutput:
    """An inherited descriptor (stdout) as a tailer's output; the descriptor is never closed here."""

    inspectable = False

    def __init__(self, fd: int = 1) -> None:
        """Raises ``OSError`` if ``fd`` is not open."""
        st = os.fstat(fd)
        self.fd: int | None = fd
        self.ident: FileId | None = FileId.of(st)
        self.path = Path("/dev/stdout" if fd == 1 else f"/dev/fd/{fd}")
        self.refusal: Block | None = None
        self.written = 0  # bytes written by this process
        self._writing = False

    def ensure(self) -> OutputState:
        return OutputState.READY

    def size(self) -> int:
        """Bytes written by this process (a stream has no size of its own)."""
        return self.written

    def write(self, fd: int, data: memoryview) -> int:
        """One blocking write; waits (interruptibly) if someone made the descriptor non-blocking."""
        self._writing = True
        try:
            while True:
                try:
                    n = os.write(fd, data)
                    break
                except BlockingIOError:
                    select.select([], [fd], [])
        except BrokenPipeError as exc:
            raise StreamClosed(str(exc)) from None
        finally:
            self._writing = False
        self.written += n
        return n

    def abort_write(self) -> None:
        """Called from a signal handler: if a write is in progress, give it up by raising
        :class:`WriteAborted` (Python runs the handler in the interrupted thread, and a blocking write
        returns to it on the signal); otherwise do nothing."""
        if self._writing:
            raise WriteAborted

    def close(self) -> None:
        """Nothing to release: the descriptor belongs to the process."""
