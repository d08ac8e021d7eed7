"""Crash recovery carried out: find the checkpointed file, repair the batch its intent describes.

The decisions are :mod:`.plan`'s; this module opens and reads the files they need and applies them. The
recovery cases, and why each is handled so: docs/tailing.md, "Crash recovery".
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Final

from .batch import Batch, SourceMark
from .checkpoint import MARK_BYTES, Checkpoint, CheckpointStore, fingerprint
from .fileid import FileId, Rotation, open_regular, read_at, rotated_siblings
from .formats import LineAssembler
from .observer import Block, BlockKind, Observer, RepairAction
from .output import Output
from .plan import RebuildFailure, Rebuilt, RepairPlan, bytes_present, plan_repair, rebuild_batch, resume_point
from .resume import decode_records, resume_offset
from .sources import SourceFile, candidates, close_all, matches_checkpoint, open_path, open_siblings

__all__ = ["RESUME_OUTPUT_BYTES", "RESUME_SOURCE_BYTES", "Recovery", "Repaired"]

#: Without a checkpoint: how much of the output's end is matched against the source (a record is at most
#: 16 KiB of content, six times that escaped in JSON), and how much of the source's end it is looked for in.
RESUME_OUTPUT_BYTES: Final = 256 << 10
RESUME_SOURCE_BYTES: Final = 16 << 20


@dataclasses.dataclass(frozen=True, slots=True)
class Repaired:
    """How a tailer goes on after an interrupted batch."""

    assembler: LineAssembler | None  # the assembler right after the batch; None: a fresh one
    pending: Batch | None  # the batch still to write (whole, or its missing rest), its intent saved


class Recovery:
    """Recovery for one source and its output, at a tailer's (re)start."""

    def __init__(
        self,
        source: Path,
        out: Output,
        store: CheckpointStore,
        observer: Observer,
        max_piece: int,
        rotation: Rotation = Rotation.ANY,
        fmt: str = "json",
        beneath: Path | None = None,
    ) -> None:
        self._source = source
        self._beneath = beneath
        self._fmt = fmt
        self._rotation = rotation
        self._key = str(source)
        self._out = out
        self._store = store
        self._observer = observer
        self._max_piece = max_piece

    def locate(self, ck: Checkpoint | None) -> tuple[SourceFile | None, list[SourceFile]]:
        """The checkpointed file positioned at its offset (or None), and the files to read after it."""
        path = open_path(self._source, self._beneath)
        if ck is None:
            if path is not None and self._out.inspectable:
                self._resume_from_output(path)
            return None, [path] if path else []
        ident = FileId(ck.dev, ck.ino)
        if path is not None and path.ident == ident and matches_checkpoint(path.fd, ck):
            path.seek(ck.offset)
            return path, []
        siblings = open_siblings(
            self._source, path.ident if path else None, self._observer, self._rotation, self._beneath
        )
        if path is not None:
            # Taken again after the listing: a copy-truncate in between put what the path held into a copy
            # we will read; the path's head must describe what it holds now, or that copy comes twice.
            path.recapture_head()
        index = resume_point(ck, candidates(siblings, lambda fd: matches_checkpoint(fd, ck)))
        if index is None:
            close_all(siblings)
            rewritten = path is not None and path.ident == ident
            self._observer.checkpoint_file_lost(self._key, ck.offset, rewritten)
            return None, [path] if path else []
        anchor = siblings[index]
        close_all(siblings[:index])
        anchor.seek(ck.offset)
        rest = siblings[index + 1 :] + ([path] if path else [])
        self._observer.resumed_in_rotated(self._key, anchor.name, ck.offset, len(rest))
        return anchor, rest

    def _resume_from_output(self, path: SourceFile) -> None:
        """No checkpoint (lost, deleted, corrupt) but an output that holds something: read ``path`` on from
        where the output ends in it, or from its start if that cannot be told (docs/tailing.md)."""
        fd = self._out.fd
        size = self._out.size() if fd is not None else 0
        if fd is None or size == 0:
            return
        start = max(0, size - RESUME_OUTPUT_BYTES)
        tail = read_at(fd, size - start, start)
        if start:
            tail = tail[tail.find(b"\n") + 1 :]  # the first record is cut
        records = decode_records(tail, self._fmt)
        output = str(self._out.path)
        if not tail.endswith(b"\n"):  # a torn record (not decoded): ended, so that the next one is whole
            self._observer.torn_line_ended(self._key, output)
            self._append_newline(self._out.path, FileId.of(os.fstat(fd)))
        if not records:
            self._observer.output_end_not_found(self._key, output, f"no whole {self._fmt} record at its end")
            return
        length = path.size()
        begin = max(0, length - RESUME_SOURCE_BYTES)
        found = resume_offset(
            read_at(path.fd, length - begin, begin), records, replaced=self._fmt == "json", start=begin == 0
        )
        if found is None:
            self._observer.output_end_not_found(self._key, output, "rotated away, or other content")
            return
        path.seek(begin + found)
        self._observer.resumed_from_output(self._key, output, begin + found)

    def repair(self, ck: Checkpoint, anchor: SourceFile | None) -> Repaired | Block:
        """Repair the batch ``ck.intent`` describes: write it, complete it, or accept it; a Block if the
        checkpoint that accepts it cannot be saved."""
        intent = ck.intent
        assert intent is not None
        rebuilt = self._rebuild(ck, anchor) if anchor is not None else None
        target = None
        if self._out.inspectable:
            target = self._find_output(Path(ck.output), FileId(ck.output_dev, ck.output_ino))
        output_size = os.fstat(target[0]).st_size if target is not None else None
        present = bytes_present(intent, output_size)
        prefix_matches = (
            target is not None
            and rebuilt is not None
            and 0 < present < intent.length
            and read_at(target[0], present, intent.output_size_before) == rebuilt.data[:present]
        )
        plan = plan_repair(
            intent,
            inspectable=self._out.inspectable,
            output_size=output_size,
            rebuilt=rebuilt is not None,
            prefix_matches=prefix_matches,
        )
        if plan.output_missing:
            self._observer.batch_output_gone(self._key, ck.output)
        if plan.size_mismatch:
            self._observer.batch_output_size_mismatch(self._key, ck.output, plan.present)
        if target is not None and target[1] and plan.action is not RepairAction.APPEND_REST:
            os.close(target[0])
        if plan.action is RepairAction.ACCEPT or anchor is None or rebuilt is None:
            return self._accept(ck, anchor, rebuilt, plan)
        self._observer.batch_repaired(self._key, plan.action)
        anchor.seek(intent.read_end)
        mark = SourceMark(FileId(ck.dev, ck.ino), ck.head_len, ck.head_hash, ck.mark_hash, ck.offset)
        batch = Batch(
            anchor, mark, intent.read_end, intent.batch_end, intent.time_ns, intent.flush,
            rebuilt.data, rebuilt.pieces,
        )  # fmt: skip
        if plan.action is RepairAction.APPEND_REST:
            assert target is not None
            batch.intent, batch.fd, batch.owned_fd, batch.written = intent, target[0], target[1], plan.present
        return Repaired(rebuilt.assembler, batch)

    def _accept(
        self, ck: Checkpoint, anchor: SourceFile | None, rebuilt: Rebuilt | None, plan: RepairPlan
    ) -> Repaired | Block:
        """The interrupted batch is written, or cannot be repaired: record that, then go on after it."""
        intent = ck.intent
        assert intent is not None
        if plan.lost:
            self._observer.batch_lost(self._key)
        mark = ck.mark_hash
        if anchor is not None:
            start = max(0, intent.batch_end - MARK_BYTES)
            mark = fingerprint(os.pread(anchor.fd, intent.batch_end - start, start))
        try:  # saved first so that a restart does not repair it twice
            self._store.save(dataclasses.replace(ck, offset=intent.batch_end, mark_hash=mark, intent=None))
        except OSError as exc:
            return Block(BlockKind.CHECKPOINT_NOT_SAVED, f"cannot save checkpoint: {exc}; will retry")
        if plan.end_torn_line:
            self._observer.torn_line_ended(self._key, ck.output)
            self._append_newline(Path(ck.output), FileId(ck.output_dev, ck.output_ino))
        if anchor is None:
            return Repaired(None, None)
        if rebuilt is not None:
            anchor.seek(intent.read_end)
            return Repaired(rebuilt.assembler, None)
        anchor.seek(intent.batch_end)
        return Repaired(None, None)

    def _rebuild(self, ck: Checkpoint, anchor: SourceFile) -> Rebuilt | None:
        """The batch of ``ck.intent`` made again from the source, or None if the source no longer has it."""
        intent = ck.intent
        assert intent is not None
        found = rebuild_batch(ck, read_at(anchor.fd, intent.read_end - ck.offset, ck.offset), self._max_piece)
        if found is RebuildFailure.MISMATCH:
            self._observer.batch_not_rebuilt(self._key)
        return found if isinstance(found, Rebuilt) else None

    def _find_output(self, path: Path, ident: FileId) -> tuple[int, bool] | None:
        """A descriptor on output file ``ident`` (at ``path`` or a rotated name of it), and if we own it."""
        if self._out.fd is not None and self._out.ident == ident:
            return self._out.fd, False
        for name in [path] + [s.path for s in rotated_siblings(path) if s.ident == ident]:
            try:
                fd, st = open_regular(name, os.O_RDWR | os.O_APPEND)
            except OSError:
                continue
            if FileId.of(st) == ident:
                return fd, True
            os.close(fd)
        return None

    def _append_newline(self, path: Path, ident: FileId) -> None:
        found = self._find_output(path, ident)
        if found is None:
            return
        fd, owned = found
        try:
            os.write(fd, b"\n")
        except OSError as exc:
            self._observer.torn_line_not_ended(self._key, str(exc))
        finally:
            if owned:
                os.close(fd)
