"""Crash recovery decided without I/O: which file to resume in, and what to do with an interrupted batch.

Pure functions of a checkpoint and of facts gathered about the files found (identity, size, whether the
content matches), so that each recovery case of docs/tailing.md is a unit test; :mod:`.recovery` gathers the
facts and carries the plan out.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import Final

from .checkpoint import MARK_BYTES, Checkpoint, Intent
from .fileid import FileId
from .formats import ENCODERS, LineAssembler, format_timestamp
from .observer import RepairAction

__all__ = [
    "MIN_FINGERPRINT",
    "Candidate",
    "RebuildFailure",
    "Rebuilt",
    "RepairPlan",
    "bytes_present",
    "pick_file",
    "plan_repair",
    "rebuild_batch",
    "resume_point",
]

#: After a restart, fewer known bytes than this (head and bytes before the offset) identify a file among
#: the rotated ones by content only if no other matches: a few bytes, such as a console's first escape code,
#: may be the same in all of them.
MIN_FINGERPRINT: Final = 64


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    """A file that may be the one looked for: its identity, its size, and whether its content matches."""

    ident: FileId
    size: int
    matches: bool


def pick_file(
    files: Sequence[Candidate], ident: FileId | None, size: int, *, unique: bool = False
) -> int | None:
    """Index of the file that is ``ident`` (renamed), else of the newest (last) whose content matches, at
    least ``size`` bytes long; with ``unique``, only if no other file matches too (the content known is too
    short to tell them apart)."""

    def fits(file: Candidate) -> bool:
        return file.size >= size and file.matches

    by_inode = [i for i, f in enumerate(files) if f.ident == ident]
    for i in by_inode:
        if fits(files[i]):
            return i
    found = (i for i in reversed(range(len(files))) if i not in by_inode and fits(files[i]))
    first = next(found, None)
    if unique and next(found, None) is not None:
        return None
    return first


def resume_point(ck: Checkpoint, siblings: Sequence[Candidate]) -> int | None:
    """Which rotated sibling (oldest first) is the checkpointed file, if any."""
    strong = ck.head_len + min(ck.offset, MARK_BYTES) >= MIN_FINGERPRINT
    return pick_file(siblings, FileId(ck.dev, ck.ino), ck.offset, unique=not strong)


@dataclasses.dataclass(frozen=True, slots=True)
class Rebuilt:
    """An interrupted batch made again: the assembler right after it, its bytes and pieces."""

    assembler: LineAssembler
    data: bytes
    pieces: int


class RebuildFailure(enum.Enum):
    SOURCE_SHORT = "source-short"  # the source no longer holds the batch's range (or the format is unknown)
    MISMATCH = "mismatch"  # made again, it is not the batch the intent describes


def rebuild_batch(ck: Checkpoint, raw: bytes, max_piece: int) -> Rebuilt | RebuildFailure:
    """The batch of ``ck.intent`` made again from ``raw``, the source's bytes from ``ck.offset`` on."""
    intent = ck.intent
    assert intent is not None
    encode = ENCODERS.get(ck.format)
    if encode is None or len(raw) != intent.read_end - ck.offset:
        return RebuildFailure.SOURCE_SHORT
    asm = LineAssembler(max_piece)
    ts = format_timestamp(intent.time_ns)
    fed = asm.feed(raw)
    data, pieces = encode(fed, ts), len(fed)
    if intent.flush != "none":
        flushed = asm.flush(final=intent.flush == "final")
        data, pieces = data + encode(flushed, ts), pieces + len(flushed)
    if len(data) != intent.length or intent.read_end - asm.pending_bytes != intent.batch_end:
        return RebuildFailure.MISMATCH
    return Rebuilt(asm, data, pieces)


def bytes_present(intent: Intent, output_size: int | None) -> int:
    """How much of the batch the output holds, by its size; ``output_size`` None: the output file is gone
    (the batch is taken as written)."""
    return intent.length if output_size is None else output_size - intent.output_size_before


@dataclasses.dataclass(frozen=True, slots=True)
class RepairPlan:
    """What to do with an interrupted batch, and what to report on the way."""

    action: RepairAction
    present: int  # bytes of the batch already in the output (0 for a stream: it is written again whole)
    output_missing: bool  # the output file is gone: the batch is assumed written
    size_mismatch: bool  # the output size is not the size before the batch plus a part of it
    lost: bool  # not written, and its source no longer has it
    end_torn_line: bool  # torn, and cannot be completed: a newline ends the torn line


def plan_repair(
    intent: Intent, *, inspectable: bool, output_size: int | None, rebuilt: bool, prefix_matches: bool
) -> RepairPlan:
    """The repair of the batch ``intent`` describes.

    ``inspectable``: the output is a file (a stream cannot be read back); ``output_size``: the size of the
    checkpointed output file as found (None if not found, or a stream); ``rebuilt``: the batch could be made
    again from its source; ``prefix_matches``: the output holds the batch's first bytes where it is torn.
    """
    found = inspectable and output_size is not None
    present = bytes_present(intent, output_size) if inspectable else 0
    torn = found and 0 < present < intent.length
    if torn and rebuilt and prefix_matches:
        action = RepairAction.APPEND_REST
    elif present <= 0 and rebuilt:
        action = RepairAction.WRITE if inspectable else RepairAction.WRITE_AGAIN
    else:
        action = RepairAction.ACCEPT
    accepted = action is RepairAction.ACCEPT
    return RepairPlan(
        action=action,
        present=present,
        output_missing=inspectable and output_size is None,
        size_mismatch=found and not 0 <= present <= intent.length,
        lost=accepted and present <= 0 and (found or not inspectable),
        end_torn_line=accepted and torn,
    )
