"""A batch on its way to the output, and the source position it was made at."""

from __future__ import annotations

import dataclasses

from .checkpoint import FlushMode, Intent
from .fileid import FileId
from .sources import SourceFile

__all__ = ["Batch", "SourceMark"]


@dataclasses.dataclass(frozen=True, slots=True)
class SourceMark:
    """The source part of a checkpoint record, taken when a batch is made."""

    ident: FileId
    head_len: int
    head_hash: str
    mark_hash: str
    offset: int


@dataclasses.dataclass(slots=True)
class Batch:
    """Encoded pieces on their way to the output; ``intent`` is set once it is saved."""

    file: SourceFile
    mark: SourceMark
    read_end: int
    batch_end: int
    time_ns: int
    flush: FlushMode
    data: bytes
    pieces: int
    intent: Intent | None = None
    fd: int = -1
    owned_fd: bool = False
    written: int = 0
