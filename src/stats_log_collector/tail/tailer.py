"""Follow one source file into one output, every byte exactly once (at least once to a stream).

A :class:`Tailer` is a plain object with synchronous methods, driven by one event loop that follows many
files (one process, no thread per file): the caller calls :meth:`Tailer.poll` when inotify reports a change
of the source or its directory, on its periodic rescan, and at :attr:`Progress.flush_at`. A poll reads what
is there in large chunks (regular files never block), cuts it into pieces (:mod:`.formats`), appends each
batch to the output and checkpoints it, within a byte budget so that one flooded console cannot starve the
others (:attr:`Progress.more` then asks to be polled again soon).

Each batch's intent is saved before it is written, so that :mod:`.recovery` can repair it after a crash;
rotation, truncation and deletion are followed here. The model, the guarantees and their known limits:
docs/tailing.md. What happens is reported to an :class:`~.observer.Observer`; the engine does not log.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from .batch import Batch, SourceMark
from .checkpoint import MARK_BYTES, Checkpoint, CheckpointStore, FlushMode, Intent, fingerprint
from .fileid import FileId, NotRegularFile, Rotation, open_regular, read_at
from .formats import ENCODERS, MAX_PIECE_BYTES, LineAssembler, Pieces, format_timestamp
from .observer import Block, BlockKind, Observer
from .output import Output, OutputFile, OutputState
from .plan import pick_file
from .recovery import Recovery
from .sources import SourceFile, candidates, close_all, open_siblings

__all__ = [
    "CHUNK_BYTES",
    "COMMIT_SECONDS",
    "IDLE_FLUSH_SECONDS",
    "POLL_BUDGET_BYTES",
    "Progress",
    "Status",
    "Tailer",
]

#: Bytes asked for by one ``read``.
CHUNK_BYTES: Final = 1 << 20
#: Bytes read by one poll at most, so that one busy source does not starve the others.
POLL_BUDGET_BYTES: Final = 8 << 20
#: Longest delay of the commit that follows a written batch (its intent covers it meanwhile).
COMMIT_SECONDS: Final = 1.0
#: Quiet time after which an unterminated last line is written as a partial piece.
IDLE_FLUSH_SECONDS: Final = 1.0

_DISK_FULL: Final = (errno.ENOSPC, errno.EDQUOT)


class Status(enum.Enum):
    """What the caller should do with a tailer after a poll."""

    ACTIVE = "active"  # following: poll on events, on the rescan and at flush_at
    # All that could be read is written and the source path does not exist, yet or any more (renamed away,
    # or deleted while we were down); the checkpoint is kept. Poll again when the path appears; a front end
    # for which a missing source means "gone" (virtlet-log, after its start) may forget it instead.
    WAITING = "waiting"
    BLOCKED = "blocked"  # cannot go on now (see error): poll again later, e.g. on the rescan
    FINISHED = "finished"  # the source was deleted and is fully written; its checkpoint is gone: drop it
    STOPPED = "stopped"  # the output directory is gone (pod deleted): drop it


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """The outcome of one poll."""

    status: Status
    read: int = 0  # source bytes read
    written: int = 0  # output bytes appended
    pieces: int = 0  # output lines appended
    more: bool = False  # the byte budget ran out with data left: poll again soon
    flush_at: float | None = None  # when (in the poll's clock) an idle flush is due: poll then
    behind: int = 0  # source bytes not read yet
    error: str | None = None  # why it is BLOCKED


class Tailer:
    """Follows one source file into one output file; see the module docstring for the guarantees."""

    def __init__(
        self,
        source: Path,
        output: Path | Output,
        store: CheckpointStore,
        *,
        fmt: str = "json",
        chunk_bytes: int = CHUNK_BYTES,
        poll_budget: int = POLL_BUDGET_BYTES,
        idle_seconds: float = IDLE_FLUSH_SECONDS,
        max_piece: int = MAX_PIECE_BYTES,
        clock: Callable[[], int] = time.time_ns,
        observer: Observer | None = None,
        rotation: Rotation = Rotation.ANY,
        beneath: Path | None = None,
    ) -> None:
        """``output`` is a file path or an :class:`~.output.Output` (a stream); ``clock`` gives the wall time
        (ns) written on the lines; ``poll(now)`` times the idle flush; ``observer`` hears the events;
        ``rotation`` says how the source's writer names its rotated files; ``beneath``, a folder above the
        source below which no folder may be a symbolic link (:func:`~.fileid.directory_beneath`)."""
        if fmt not in ENCODERS:
            raise ValueError(f"unknown log format {fmt!r}")
        self._source = source
        self._key = str(source)
        self._observer: Observer = observer or Observer()
        self._out: Output = OutputFile(output, fmt, self._observer) if isinstance(output, Path) else output
        self._store = store
        self._rotation = rotation
        self._beneath = beneath
        self._recovery = Recovery(source, self._out, store, self._observer, max_piece, rotation, fmt, beneath)
        self._fmt = fmt
        self._encode = ENCODERS[fmt]
        self._chunk = chunk_bytes
        self._budget = poll_budget
        self._idle = idle_seconds
        self._max_piece = max_piece
        self._clock = clock
        self._cur: SourceFile | None = None
        self._queue: list[SourceFile] = []
        self._asm = LineAssembler(max_piece)
        self._offset = 0  # committed: everything before it in self._cur is in the output
        self._pending: Batch | None = None
        self._dirty = False  # the checkpoint on disk lags behind (it may hold the intent of a written batch)
        self._urgent = False  # ... and must be saved at the end of the poll (the file changed)
        self._saved_at = 0.0
        self._now = 0.0
        self._last_data = 0.0
        self._idle_done = True
        self._status = Status.WAITING
        self._error: Block | None = None  # the reported block reason
        self._blocked: Block | None = None  # the block reason of this poll
        self._read = self._written = self._pieces = 0

    @property
    def source(self) -> Path:
        return self._source

    @property
    def output(self) -> Path:
        return self._out.path

    @property
    def status(self) -> Status:
        return self._status

    # ----------------------------------------------------------------------------------------------------
    # The caller's interface

    def poll(self, now: float) -> Progress:
        """Read, write and checkpoint what is available; ``now`` is a monotonic clock in seconds."""
        if self._status in (Status.FINISHED, Status.STOPPED):
            return Progress(self._status)
        self._read = self._written = self._pieces = 0
        self._blocked = None
        self._now = now
        more = False
        try:
            more = self._poll(now)
        except OSError as exc:  # an unexpected I/O error: report it and try again on the next poll
            self._block(Block(BlockKind.IO_ERROR, f"I/O error: {exc}"))
        self._report_block()
        return self._progress(more)

    def close(self) -> None:
        """Save the checkpoint and release the files. A later poll resumes from the checkpoint."""
        try:
            self._commit(force=True)
        except OSError as exc:
            self._observer.checkpoint_not_saved(self._key, str(exc))
        self._release()
        if self._status not in (Status.FINISHED, Status.STOPPED):
            self._status = Status.WAITING

    # ----------------------------------------------------------------------------------------------------
    # One poll

    def _poll(self, now: float) -> bool:
        if self._cur is None and not self._start(now):
            return False
        self._status = Status.ACTIVE
        if self._pending is not None and not self._finish_pending():
            return False
        if not self._ready_output():
            return False
        more = self._read_loop(now)
        if self._cur is not None and self._pending is None and self._flush_due(now):
            self._idle_done = True
            self._emit(self._asm.flush(), "idle")
        self._commit()
        return more

    def _read_loop(self, now: float) -> bool:
        """Read and write until the end of the input, a block or the budget; True if the budget ran out."""
        budget = self._budget
        while self._cur is not None and self._status is Status.ACTIVE:
            if budget <= 0:
                return True
            cur = self._cur
            chunk = os.read(cur.fd, self._chunk)
            if chunk and not cur.consistent(chunk):
                # Truncated and refilled past our offset since we last looked: the chunk is new content.
                if not self._truncated(cur):
                    return False
            elif chunk:
                budget -= len(chunk)
                cur.advance(chunk)
                self._read += len(chunk)
                self._last_data, self._idle_done = now, False
                if not self._emit(self._asm.feed(chunk), "none"):
                    return False
            elif not self._at_end():
                return False
        return False

    def _flush_due(self, now: float) -> bool:
        return not self._idle_done and self._asm.pending_bytes > 0 and now - self._last_data >= self._idle

    def _progress(self, more: bool) -> Progress:
        flush_at = None
        if not self._idle_done and self._asm.pending_bytes > 0:
            flush_at = self._last_data + self._idle
        behind = 0
        for f in [self._cur, *self._queue] if self._cur else []:
            behind += max(0, os.fstat(f.fd).st_size - f.pos)
        error = self._error.message if self._error is not None else None
        return Progress(self._status, self._read, self._written, self._pieces, more, flush_at, behind, error)

    # ----------------------------------------------------------------------------------------------------
    # The end of the data: rotation, truncation, deletion

    def _at_end(self) -> bool:
        """At the end of the current file: find out why; True if there is something new to read."""
        cur = self._cur
        assert cur is not None
        st = os.fstat(cur.fd)
        if cur.rewritten(st.st_size):
            return self._truncated(cur)
        if cur.final:
            return self._finish_file(cur, st)
        try:  # lstat: a symbolic link swapped in is another file, which _open_new_path refuses
            at_path: FileId | None = FileId.of(os.lstat(self._source))
        except FileNotFoundError:
            at_path = None
        if at_path == cur.ident:
            return False
        if at_path is None and st.st_nlink > 0:
            self._status = Status.WAITING  # renamed away, and the new file is not there (yet)
            return False
        # Rotated or deleted: read once more what was written before that, then finish the file.
        cur.final = True
        return True

    def _finish_file(self, cur: SourceFile, st: os.stat_result) -> bool:
        """Flush everything held and go on with the next file; True if there is one."""
        if not self._emit(self._asm.flush(final=True), "final"):
            return False
        if not self._queue:
            self._queue = self._files_after(cur)
        if self._queue:
            self._switch(self._queue.pop(0))
            return True
        if not self._source.exists():
            if st.st_nlink == 0:
                self._finish()  # deleted, and everything it held is written
            else:
                self._status = Status.WAITING
        return False

    def _siblings(self, exclude: FileId | None) -> list[SourceFile]:
        return open_siblings(self._source, exclude, self._observer, self._rotation, self._beneath)

    def _files_after(self, cur: SourceFile) -> list[SourceFile]:
        """What rotation made after ``cur``: the newer rotated siblings (two rotations between polls), then
        the file at the path."""
        path = self._open_new_path(cur.ident)
        siblings = self._siblings(path.ident if path else None)
        index = next((i for i, f in enumerate(siblings) if f.ident == cur.ident), None)
        if index is not None:
            newer = siblings[index + 1 :]
        else:  # renamed and deleted: its age decides
            mtime = os.fstat(cur.fd).st_mtime_ns
            newer = [f for f in siblings if os.fstat(f.fd).st_mtime_ns > mtime]
        close_all(f for f in siblings if f not in newer)
        return newer + ([path] if path else [])

    def _switch(self, nxt: SourceFile) -> None:
        cur = self._cur
        if cur is not None and cur.fd != nxt.fd:
            os.close(cur.fd)
        self._observer.rotated(self._key, nxt.name, nxt.pos)
        self._cur = nxt
        nxt.seek(nxt.pos)
        self._asm = LineAssembler(self._max_piece)
        self._offset = nxt.pos
        self._dirty = self._urgent = True

    def _truncated(self, cur: SourceFile) -> bool:
        """The file shrank or was rewritten (copy-truncate): finish from its copy if found, then from 0."""
        head, tail, pos = cur.head, cur.tail, cur.pos

        def same_content(fd: int) -> bool:
            return read_at(fd, len(head), 0) == head and read_at(fd, len(tail), pos - len(tail)) == tail

        # The copy made by this truncation is the newest sibling, looked at first: any known byte will do.
        siblings: list[SourceFile] = []
        if head or tail:
            siblings = self._siblings(cur.ident)
        index = pick_file(candidates(siblings, same_content), None, pos)
        restart = SourceFile(cur.fd, cur.ident, cur.name, final=cur.final)
        if index is not None:
            copy = siblings[index]
            self._observer.truncated(self._key, pos, copy.name)
            close_all(siblings[:index])
            copy.seek(pos)
            self._cur = copy  # the same bytes at the same offsets: the assembler goes on
            self._queue = [*siblings[index + 1 :], restart, *self._queue]
            self._dirty = self._urgent = True
            return True
        close_all(siblings)
        self._observer.truncated(self._key, pos, None)
        # The held bytes are written (a batch made from the old content); then the new content from 0.
        written = self._emit(self._asm.flush(final=True), "final")
        self._cur = restart
        restart.seek(0)
        self._asm = LineAssembler(self._max_piece)
        self._offset = 0
        self._dirty = self._urgent = True
        return written

    def _open_new_path(self, old: FileId) -> SourceFile | None:
        """The file now at the source path if it is not ``old``."""
        try:
            fd, st = open_regular(self._source, beneath=self._beneath)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._block(_source_block(exc))
            return None
        if FileId.of(st) == old:
            os.close(fd)
            return None
        return SourceFile(fd, FileId.of(st), self._key)

    def _finish(self) -> None:
        self._observer.finished(self._key)
        self._store.forget(self._key)
        self._release()
        self._status = Status.FINISHED

    def _stop(self) -> None:
        self._observer.output_gone(self._key, self.output)
        self._release()
        self._status = Status.STOPPED

    def _release(self) -> None:
        for f in [self._cur, *self._queue] if self._cur else self._queue:
            os.close(f.fd)
        if self._pending is not None and self._pending.owned_fd:
            os.close(self._pending.fd)
        self._cur, self._queue, self._pending = None, [], None
        self._asm = LineAssembler(self._max_piece)
        self._out.close()

    # ----------------------------------------------------------------------------------------------------
    # Writing: intent, append, commit

    def _emit(self, pieces: Pieces, flush: FlushMode) -> bool:
        """Encode ``pieces`` as one batch and write it; False if it is pending (blocked)."""
        if not pieces:
            return True
        cur = self._cur
        assert cur is not None
        time_ns = self._clock()
        self._pending = Batch(
            file=cur,
            mark=self._source_mark(),
            read_end=cur.pos,
            batch_end=cur.pos - self._asm.pending_bytes,
            time_ns=time_ns,
            flush=flush,
            data=self._encode(pieces, format_timestamp(time_ns)),
            pieces=len(pieces),
        )
        return self._finish_pending()

    def _finish_pending(self) -> bool:
        batch = self._pending
        assert batch is not None
        if batch.intent is None and not self._save_intent(batch):
            return False
        view = memoryview(batch.data)
        while batch.written < len(batch.data):
            try:
                n = self._out.write(batch.fd, view[batch.written :])
            except OSError as exc:
                if exc.errno in _DISK_FULL:
                    self._block(Block(BlockKind.DISK_FULL, f"output disk full: {exc}; will retry"))
                else:
                    self._block(Block(BlockKind.WRITE_FAILED, f"cannot write output: {exc}; will retry"))
                return False
            batch.written += n
            self._written += n
        self._pending = None
        if batch.owned_fd:
            os.close(batch.fd)
        self._pieces += batch.pieces
        if batch.file is self._cur:
            self._offset = batch.batch_end
        self._dirty = True
        if not self._out.inspectable:
            self._commit(force=True)  # a stream repeats its intent's batch after a crash: keep that short
        return True

    def _save_intent(self, batch: Batch) -> bool:
        if not self._ready_output():
            return False
        out = self._out
        assert out.fd is not None and out.ident is not None
        size = out.size()
        intent = Intent(batch.read_end, batch.batch_end, batch.time_ns, batch.flush, size, len(batch.data))
        try:
            self._store.save(self._record(batch.mark, out.ident, size, intent))
        except OSError as exc:
            self._block(Block(BlockKind.CHECKPOINT_NOT_SAVED, f"cannot save checkpoint: {exc}; will retry"))
            return False
        batch.intent, batch.fd = intent, out.fd
        self._dirty = self._urgent = False
        self._saved_at = self._now
        return True

    def _commit(self, *, force: bool = False) -> None:
        """Save the committed offset (clearing the intent) if the checkpoint on disk lags behind.

        After a written batch that is not urgent: its intent already says all that recovery needs (the
        output holds the whole batch, so it goes on after it), and the next batch's intent commits it. So
        a busy or chatty source saves one record per batch plus at most one commit per COMMIT_SECONDS.
        """
        if not self._dirty or self._pending is not None or self._cur is None:
            return
        if not (force or self._urgent or self._now - self._saved_at >= COMMIT_SECONDS):
            return
        if self._offset == 0 and not self._cur.head:
            # At the start of a file with nothing in it yet: such a record knows no content, and after a
            # copy-truncate it would match any later content of the path (same inode). The record on disk
            # (the previous file, finished) is the better one until this file has bytes.
            return
        out = self._out
        ident = out.ident or FileId(0, 0)
        size = out.size() if out.fd is not None else 0
        try:
            self._store.save(self._record(self._source_mark(), ident, size, None))
        except OSError as exc:  # the next intent commits it too
            self._observer.checkpoint_not_saved(self._key, str(exc))
            return
        self._dirty = self._urgent = False
        self._saved_at = self._now

    def _source_mark(self) -> SourceMark:
        cur = self._cur
        assert cur is not None
        start = max(0, self._offset - MARK_BYTES)
        mark = os.pread(cur.fd, self._offset - start, start)
        return SourceMark(cur.ident, len(cur.head), cur.head_hash, fingerprint(mark), self._offset)

    def _record(self, mark: SourceMark, out: FileId, out_size: int, intent: Intent | None) -> Checkpoint:
        return Checkpoint(
            source=self._key,
            dev=mark.ident.dev,
            ino=mark.ident.ino,
            head_len=mark.head_len,
            head_hash=mark.head_hash,
            mark_hash=mark.mark_hash,
            offset=mark.offset,
            output=str(self._out.path),
            output_dev=out.dev,
            output_ino=out.ino,
            output_size=out_size,
            format=self._fmt,
            intent=intent,
        )

    def _ready_output(self) -> bool:
        state = self._out.ensure()
        if state is OutputState.GONE:
            self._stop()
            return False
        if state is OutputState.REFUSED:
            self._block(self._out.refusal or Block(BlockKind.OUTPUT_REFUSED, "output refused"))
            return False
        return True

    def _block(self, block: Block) -> None:
        if self._status in (Status.FINISHED, Status.STOPPED):
            return
        self._status = Status.BLOCKED
        if self._blocked is None:
            self._blocked = block

    def _report_block(self) -> None:
        """Report a block reason once when it appears or changes, and once when it is over."""
        if self._blocked is not None:
            if self._blocked != self._error:
                self._observer.blocked(self._key, self.output, self._blocked)
            self._error = self._blocked
        elif self._error is not None:
            if self._status is Status.ACTIVE:
                self._observer.unblocked(self._key, self._error)
            self._error = None

    # ----------------------------------------------------------------------------------------------------
    # Start and recovery

    def _start(self, now: float) -> bool:
        """Open the files to read from the checkpoint, repairing an interrupted batch; False if not ready."""
        if not self._ready_output():
            return False
        checkpoint = self._store.load(self._key)
        try:
            anchor, rest = self._recovery.locate(checkpoint)
        except OSError as exc:
            self._block(_source_block(exc))
            return False
        files = [anchor, *rest] if anchor else rest
        if checkpoint is not None and checkpoint.intent is not None and not self._recover(checkpoint, anchor):
            close_all(files)
            return False
        if not files:
            self._status = Status.WAITING
            return False
        self._cur, self._queue = files[0], files[1:]
        if self._pending is None:
            self._offset = self._cur.pos - self._asm.pending_bytes
        self._last_data, self._idle_done = now, False
        self._status = Status.ACTIVE
        self._dirty = self._urgent = True
        self._observer.opened(self._key, self._cur.name, self._cur.pos)
        return True

    def _recover(self, ck: Checkpoint, anchor: SourceFile | None) -> bool:
        """Repair the interrupted batch of ``ck`` (:mod:`.recovery`); False if blocked."""
        repaired = self._recovery.repair(ck, anchor)
        if isinstance(repaired, Block):
            self._block(repaired)
            return False
        if repaired.assembler is not None:
            self._asm = repaired.assembler
        if repaired.pending is not None:
            self._offset = ck.offset
            self._pending = repaired.pending
        return True


def _source_block(exc: OSError) -> Block:
    """Why a source file cannot be opened: refused (a symbolic link, FIFO...) or unusable (permission...)."""
    if isinstance(exc, NotRegularFile):
        return Block(BlockKind.SOURCE_REFUSED, f"source refused: {exc}")
    return Block(BlockKind.SOURCE_UNUSABLE, f"source unusable: {exc}")
