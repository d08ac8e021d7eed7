"""The kubelet log file a tailer appends to: opened append-only, followed through kubelet's rotation.

Three rules, each from how kubelet treats the file:

* only ever append (``O_APPEND``), never truncate or rewrite: what is in the file has been served already;
* kubelet rotates the file by renaming it away (``<file>.<YYYYMMDD-HHMMSS>``) and expects the writer to
  reopen the path, so before writing we compare the path with the open descriptor and reopen when they
  differ; the pod's directory is never created here, and its disappearance means the pod is gone;
* kubelet picks its parser from the first line, so a non-empty file in the other format (or in no format we
  know) is refused rather than made unreadable.

:class:`Output` is what a tailer needs of its output, so that the same engine also writes to a stream
(:mod:`.stream`): a file can be read back after a crash, a stream cannot.
"""

from __future__ import annotations

import enum
import os
import re
from pathlib import Path
from typing import Final, Protocol

from .fileid import FileId, NotRegularFile, open_regular
from .observer import Block, BlockKind, Observer

__all__ = ["Output", "OutputFile", "OutputState", "detect_format", "write_some"]

_CRI_START: Final = re.compile(
    rb"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2}) "
    rb"(?:stdout|stderr) "
)
_SNIFF_BYTES: Final = 256


def detect_format(start: bytes) -> str | None:
    """``cri`` or ``json`` from the start of a log file's first line, None if it is neither."""
    if start.startswith(b"{"):
        return "json"
    if _CRI_START.match(start):
        return "cri"
    return None


def write_some(fd: int, data: memoryview) -> int:
    """One ``write``: the tailer loops on short writes. A separate function so fault tests can replace it."""
    return os.write(fd, data)


class OutputState(enum.Enum):
    READY = "ready"
    GONE = "gone"  # the directory is gone: the pod was deleted
    REFUSED = "refused"  # the file cannot be used (other format, not a regular file, no permission)


class Output(Protocol):
    """What a tailer appends its batches to: an :class:`OutputFile`, or a stream."""

    path: Path  # named in checkpoints and logs
    fd: int | None  # where batches go, once ensure() said READY
    ident: FileId | None
    refusal: Block | None  # why ensure() refused

    @property
    def inspectable(self) -> bool:
        """Can a crash be repaired by reading the output back (exactly once)? A file tells by its size how
        much of an interrupted batch it holds; a stream cannot, so its tailer writes that batch again and
        commits every batch as soon as it is written (at least once, at most the last batch twice)."""
        ...

    def ensure(self) -> OutputState:
        """Make ``fd`` usable; called before each batch."""
        ...

    def size(self) -> int:
        """Bytes in the output (recorded in checkpoints)."""
        ...

    def write(self, fd: int, data: memoryview) -> int:
        """One write of ``data`` to ``fd`` (``fd``, or a recovered descriptor of a rotated file); short
        writes are looped on. An ``OSError`` blocks the tailer until a later poll; any other exception
        abandons the poll with the batch pending, its intent saved, as a crash would."""
        ...

    def close(self) -> None: ...


class OutputFile:
    """One output path and the descriptor currently open on it."""

    inspectable = True

    def __init__(self, path: Path, fmt: str, observer: Observer | None = None) -> None:
        self.path = path
        self.fmt = fmt
        self.fd: int | None = None
        self.ident: FileId | None = None
        #: Why the last :meth:`ensure` refused, for the caller's report.
        self.refusal: Block | None = None
        self._observer: Observer = observer or Observer()

    def ensure(self) -> OutputState:
        """Make ``fd`` the file now at ``path``, reopening (creating) it if kubelet rotated it away."""
        if self.fd is not None:
            try:
                current = FileId.of(os.stat(self.path))
            except FileNotFoundError:
                current = None
            except OSError as exc:
                return self._refuse(f"cannot stat output: {exc}")
            if current == self.ident:
                return OutputState.READY
            self._observer.output_reopened(self.path)
            self.close()
        return self._open()

    def _open(self) -> OutputState:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT
        try:
            fd, st = open_regular(self.path, flags)
        except FileNotFoundError:
            return OutputState.GONE  # O_CREAT only fails so when the directory is missing
        except NotRegularFile as exc:
            return self._refuse(str(exc))
        except OSError as exc:
            return self._refuse(f"cannot open output: {exc}")
        if st.st_size > 0:
            found = detect_format(os.pread(fd, _SNIFF_BYTES, 0))
            if found != self.fmt:
                os.close(fd)
                what = f"{found} format" if found else "an unknown format"
                message = f"output already holds {what}, not {self.fmt}: not mixing formats"
                return self._refuse(message, BlockKind.MIXED_FORMAT)
        self.fd, self.ident, self.refusal = fd, FileId.of(st), None
        return OutputState.READY

    def _refuse(self, reason: str, kind: BlockKind = BlockKind.OUTPUT_REFUSED) -> OutputState:
        self.refusal = Block(kind, reason)
        return OutputState.REFUSED

    def size(self) -> int:
        """Current size of the open file."""
        assert self.fd is not None
        return os.fstat(self.fd).st_size

    def write(self, fd: int, data: memoryview) -> int:
        return write_some(fd, data)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.fd = None
        self.ident = None
