"""Follow one raw console file into its kubelet log file, every byte exactly once, whatever happens.

A :class:`Tailer` is a plain object with synchronous methods, driven by one event loop that follows many
files (one process, no thread per file): the caller calls :meth:`Tailer.poll` when inotify reports a change
of the source or its directory, on its periodic rescan, and at :attr:`Progress.flush_at`. A poll reads what
is there in large chunks (regular files never block), cuts it into pieces (:mod:`.formats`), appends each
batch to the output and checkpoints it, within a byte budget so that one flooded console cannot starve the
others (:attr:`Progress.more` then asks to be polled again soon).

Exactly once, across ``kill -9`` at any instant, rests on three things:

* a write-ahead :class:`~.checkpoint.Intent` saved before each batch is appended: after a crash the batch
  is rebuilt from the source (it is a pure function of the source range, the flush mode and the timestamp)
  and compared with the output's size: not written, written, or torn, in which case exactly the missing
  suffix is appended (after checking that the part present is the batch's prefix). The intent of the next
  batch also commits the previous one, and a written batch's intent is itself enough for recovery, so a
  source costs one checkpoint per batch (a chunk of up to 1 MiB, or a poll's lines) plus at most one
  intent-clearing commit per second (:data:`COMMIT_SECONDS`);
* the committed offset is ``bytes read - bytes the assembler still holds``: an unterminated line is not
  committed, so after a restart it is read again (fluent-bit#11265), and a line cut by an idle flush goes on
  where the flush left it;
* the source is known by inode and content fingerprints (:mod:`.fileid`), not by path: a renamed file is
  read to its end and flushed before the new one is started at 0 (fluent-bit#2110, #5382); after a restart
  the checkpointed file is found among the rotated siblings and finished, then every newer sibling, then the
  current file (loki#14462), never an older one (fluent-bit#1330); a truncated or rewritten file (copy-
  truncate) is finished from its copy when the copy is found, then read again from 0; a reused inode with
  other content is a new file (vector#1910).

A full disk blocks the tailer with the encoded batch kept in memory (the intent already describes it): it is
retried on every poll and nothing new is read meanwhile, so memory stays bounded by one batch.

Rotated files move while they are looked at (every rotation renames them all), so they are listed and opened
as one snapshot, and a file's content is checked on every read against what is known of it; these checks
come from stress runs with a rotation every 33 ms and ``kill -9`` every few hundred milliseconds.

The output is an :class:`~.output.Output`: a kubelet log file (a path), or a stream such as console-tail's
stdout. A stream cannot be read back, so it gets at least once instead: an interrupted batch is written
again whole, and each batch is committed as soon as its write returns, so only the last one can repeat.

Known limits: a writer that keeps appending to a file after it was renamed *and* a new file appeared loses
what it appends after we finished the old file; a file truncated and refilled past our offset with the same
first KiB and the same 64 bytes before the offset is taken for the old one; bytes appended between our last
read and a copy-truncate whose copy cannot be found are lost (they are nowhere to be read); after a restart,
a file of which fewer than 64 bytes are known is found among copy-truncated copies only if it is the only
match (else the current file is read from its start and a few lines may be lost).
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from .checkpoint import MARK_BYTES, Checkpoint, CheckpointStore, FlushMode, Intent, fingerprint
from .fileid import HEAD_BYTES, FileId, Sibling, open_regular, read_at, rotated_siblings
from .formats import ENCODERS, MAX_PIECE_BYTES, LineAssembler, Pieces, format_timestamp
from .output import Output, OutputFile, OutputState

__all__ = [
    "CHUNK_BYTES",
    "COMMIT_SECONDS",
    "IDLE_FLUSH_SECONDS",
    "POLL_BUDGET_BYTES",
    "Progress",
    "Status",
    "Tailer",
]

log = logging.getLogger(__name__)

#: Bytes asked for by one ``read``.
CHUNK_BYTES: Final = 1 << 20
#: Bytes read by one poll at most, so that one busy source does not starve the others.
POLL_BUDGET_BYTES: Final = 8 << 20
#: Longest delay of the commit that follows a written batch (its intent covers it meanwhile).
COMMIT_SECONDS: Final = 1.0
#: Quiet time after which an unterminated last line is written as a partial piece.
IDLE_FLUSH_SECONDS: Final = 1.0

_DISK_FULL: Final = (errno.ENOSPC, errno.EDQUOT)
#: After a restart, fewer known bytes than this (head and bytes before the offset) identify a file among
#: the rotated ones by content only if no other matches: a few bytes, such as a console's first escape code,
#: may be the same in all of them.
MIN_FINGERPRINT: Final = 64
#: How often the rotated siblings are listed again when names move while they are being opened.
_LIST_ATTEMPTS: Final = 5


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


class _Open:
    """A source file open for reading, with the content fingerprints that tell if it is still the same."""

    __slots__ = ("_head_hash", "deleted", "fd", "final", "head", "ident", "name", "pos", "tail")

    def __init__(self, fd: int, ident: FileId, name: str, *, pos: int = 0, final: bool = False) -> None:
        self.fd = fd
        self.ident = ident
        self.name = name
        #: No more data will be appended (a rotated file): at its end, flush everything and go to the next.
        self.final = final
        self.head = os.pread(fd, HEAD_BYTES, 0)
        self._head_hash: str | None = None
        self.pos = pos
        self.tail = b""
        self.seek(pos)

    def seek(self, pos: int) -> None:
        """Read from ``pos`` on."""
        os.lseek(self.fd, pos, os.SEEK_SET)
        self.pos = pos
        start = max(0, pos - MARK_BYTES)
        self.tail = os.pread(self.fd, pos - start, start) if pos else b""

    def advance(self, chunk: bytes) -> None:
        """Account for ``chunk``, read at ``pos`` and found :meth:`consistent`."""
        if len(self.head) < HEAD_BYTES and self.pos <= len(self.head) < self.pos + len(chunk):
            # The head grows from checked reads only: a fresh pread could already see a rewritten file.
            self.head = (self.head + chunk[len(self.head) - self.pos :])[:HEAD_BYTES]
            self._head_hash = None
        self.pos += len(chunk)
        self.tail = chunk[-MARK_BYTES:] if len(chunk) >= MARK_BYTES else (self.tail + chunk)[-MARK_BYTES:]

    def recapture_head(self) -> None:
        """Take the head again (only before anything is read)."""
        self.head = os.pread(self.fd, HEAD_BYTES, 0)
        self._head_hash = None

    @property
    def head_hash(self) -> str:
        if self._head_hash is None:
            self._head_hash = fingerprint(self.head)
        return self._head_hash

    def consistent(self, chunk: bytes) -> bool:
        """Was ``chunk``, just read at ``pos``, read from the content we know? The bytes before ``pos`` must
        be unchanged, and where the chunk overlaps the head captured at open, it must agree with it (a file
        that waited in the queue may have been truncated and refilled before its first read)."""
        if self.tail and os.pread(self.fd, len(self.tail), self.pos - len(self.tail)) != self.tail:
            return False
        known = self.head[self.pos : self.pos + len(chunk)]
        return chunk.startswith(known)

    def rewritten(self, size: int) -> bool:
        """True if the file shrank below what we read, or the bytes at its start or before ``pos`` changed."""
        if size < self.pos:
            return True
        if self.head and os.pread(self.fd, len(self.head), 0) != self.head:
            return True
        return bool(self.tail) and os.pread(self.fd, len(self.tail), self.pos - len(self.tail)) != self.tail


@dataclasses.dataclass(frozen=True, slots=True)
class _SourceMark:
    """The source part of a checkpoint record, taken when a batch is made."""

    ident: FileId
    head_len: int
    head_hash: str
    mark_hash: str
    offset: int


@dataclasses.dataclass(slots=True)
class _Batch:
    """Encoded pieces on their way to the output; ``intent`` is set once it is saved."""

    file: _Open
    mark: _SourceMark
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


@dataclasses.dataclass(frozen=True, slots=True)
class _Regenerated:
    """An interrupted batch made again: the file it came from, the assembler right after it, the bytes."""

    file: _Open
    assembler: LineAssembler
    data: bytes
    pieces: int


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
    ) -> None:
        """``output`` is a file path or an :class:`~.output.Output` (a stream); ``clock`` gives the wall time
        (ns) written on the lines; ``poll(now)`` times the idle flush."""
        if fmt not in ENCODERS:
            raise ValueError(f"unknown log format {fmt!r}")
        self._source = source
        self._key = str(source)
        self._out: Output = OutputFile(output, fmt) if isinstance(output, Path) else output
        self._store = store
        self._fmt = fmt
        self._encode = ENCODERS[fmt]
        self._chunk = chunk_bytes
        self._budget = poll_budget
        self._idle = idle_seconds
        self._max_piece = max_piece
        self._clock = clock
        self._cur: _Open | None = None
        self._queue: list[_Open] = []
        self._asm = LineAssembler(max_piece)
        self._offset = 0  # committed: everything before it in self._cur is in the output
        self._pending: _Batch | None = None
        self._dirty = False  # the checkpoint on disk lags behind (it may hold the intent of a written batch)
        self._urgent = False  # ... and must be saved at the end of the poll (the file changed)
        self._saved_at = 0.0
        self._now = 0.0
        self._last_data = 0.0
        self._idle_done = True
        self._status = Status.WAITING
        self._error: str | None = None  # the reported block reason
        self._blocked: tuple[str, int] | None = None  # the block reason of this poll, with its log level
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
            self._block(f"I/O error: {exc}", logging.ERROR)
        self._report_block()
        return self._progress(more)

    def close(self) -> None:
        """Save the checkpoint and release the files. A later poll resumes from the checkpoint."""
        try:
            self._commit(force=True)
        except OSError as exc:
            log.warning("cannot save checkpoint", extra={"source": self._key, "error": str(exc)})
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
        return Progress(
            self._status, self._read, self._written, self._pieces, more, flush_at, behind, self._error
        )

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
        try:
            at_path: FileId | None = FileId.of(os.stat(self._source))
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

    def _finish_file(self, cur: _Open, st: os.stat_result) -> bool:
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

    def _files_after(self, cur: _Open) -> list[_Open]:
        """What rotation made after ``cur``: the newer rotated siblings (two rotations between polls), then
        the file at the path."""
        path = self._open_new_path(cur.ident)
        siblings = self._open_siblings(path.ident if path else None)
        index = next((i for i, f in enumerate(siblings) if f.ident == cur.ident), None)
        if index is not None:
            newer = siblings[index + 1 :]
        else:  # renamed and deleted: its age decides
            mtime = os.fstat(cur.fd).st_mtime_ns
            newer = [f for f in siblings if os.fstat(f.fd).st_mtime_ns > mtime]
        _close_all(f for f in siblings if f not in newer)
        return newer + ([path] if path else [])

    def _switch(self, nxt: _Open) -> None:
        cur = self._cur
        if cur is not None and cur.fd != nxt.fd:
            os.close(cur.fd)
        log.info("source: next file", extra={"source": self._key, "file": nxt.name, "offset": nxt.pos})
        self._cur = nxt
        nxt.seek(nxt.pos)
        self._asm = LineAssembler(self._max_piece)
        self._offset = nxt.pos
        self._dirty = self._urgent = True

    def _truncated(self, cur: _Open) -> bool:
        """The file shrank or was rewritten (copy-truncate): finish from its copy if found, then from 0."""
        head, tail, pos = cur.head, cur.tail, cur.pos

        def same_content(fd: int) -> bool:
            return read_at(fd, len(head), 0) == head and read_at(fd, len(tail), pos - len(tail)) == tail

        # The copy made by this truncation is the newest sibling, looked at first: any known byte will do.
        siblings = self._open_siblings(cur.ident) if head or tail else []
        index = _find_file(siblings, None, pos, same_content)
        restart = _Open(cur.fd, cur.ident, cur.name, final=cur.final)
        if index is not None:
            copy = siblings[index]
            log.warning(
                "source truncated: finishing it from its copy, then reading it again from the start",
                extra={"source": self._key, "copy": copy.name, "offset": pos},
            )
            _close_all(siblings[:index])
            copy.seek(pos)
            self._cur = copy  # the same bytes at the same offsets: the assembler goes on
            self._queue = [*siblings[index + 1 :], restart, *self._queue]
            self._dirty = self._urgent = True
            return True
        _close_all(siblings)
        log.warning(
            "source truncated and no copy found: what was appended after our last read is lost",
            extra={"source": self._key, "offset": pos},
        )
        # The held bytes are written (a batch made from the old content); then the new content from 0.
        written = self._emit(self._asm.flush(final=True), "final")
        self._cur = restart
        restart.seek(0)
        self._asm = LineAssembler(self._max_piece)
        self._offset = 0
        self._dirty = self._urgent = True
        return written

    def _open_siblings(self, exclude: FileId | None) -> list[_Open]:
        """The rotated siblings of the source path (but ``exclude``), oldest first, all opened at once.

        Rotation renames them while we look (``x.log.1`` becomes ``x.log.2``): a name that no longer holds
        the file listed makes us list again, so that none is missed or taken for another; after that only
        the open descriptors are used.
        """
        opened: list[_Open] = []
        listed: list[Sibling] = []
        for attempt in range(_LIST_ATTEMPTS):
            listed = [s for s in rotated_siblings(self._source) if s.ident != exclude]
            opened = [f for f in map(self._open_sibling, listed) if f is not None]
            if len(opened) == len(listed) or attempt == _LIST_ATTEMPTS - 1:
                break
            _close_all(opened)
        if len(opened) != len(listed):
            log.warning("rotated files kept moving while listed", extra={"source": self._key})
        return opened

    def _open_new_path(self, old: FileId) -> _Open | None:
        """The file now at the source path if it is not ``old``."""
        try:
            fd, st = open_regular(self._source)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._block(f"source unusable: {exc}", logging.WARNING)
            return None
        if FileId.of(st) == old:
            os.close(fd)
            return None
        return _Open(fd, FileId.of(st), self._key)

    def _open_sibling(self, sibling: Sibling) -> _Open | None:
        """A rotated sibling, opened if it is still the file that was listed."""
        try:
            fd, st = open_regular(sibling.path)
        except OSError:
            return None
        if FileId.of(st) != sibling.ident:
            os.close(fd)
            return None
        return _Open(fd, sibling.ident, str(sibling.path), final=True)

    def _finish(self) -> None:
        log.info("source deleted and fully written; forgetting it", extra={"source": self._key})
        self._store.forget(self._key)
        self._release()
        self._status = Status.FINISHED

    def _stop(self) -> None:
        log.info(
            "output directory is gone; stopping", extra={"source": self._key, "output": str(self.output)}
        )
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
        self._pending = _Batch(
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
                reason = "output disk full" if exc.errno in _DISK_FULL else "cannot write output"
                self._block(f"{reason}: {exc}; will retry", logging.ERROR)
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

    def _save_intent(self, batch: _Batch) -> bool:
        if not self._ready_output():
            return False
        out = self._out
        assert out.fd is not None and out.ident is not None
        size = out.size()
        intent = Intent(batch.read_end, batch.batch_end, batch.time_ns, batch.flush, size, len(batch.data))
        try:
            self._store.save(self._record(batch.mark, out.ident, size, intent))
        except OSError as exc:
            self._block(f"cannot save checkpoint: {exc}; will retry", logging.ERROR)
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
            log.warning("cannot save checkpoint", extra={"source": self._key, "error": str(exc)})
            return
        self._dirty = self._urgent = False
        self._saved_at = self._now

    def _source_mark(self) -> _SourceMark:
        cur = self._cur
        assert cur is not None
        start = max(0, self._offset - MARK_BYTES)
        mark = os.pread(cur.fd, self._offset - start, start)
        return _SourceMark(cur.ident, len(cur.head), cur.head_hash, fingerprint(mark), self._offset)

    def _record(self, mark: _SourceMark, out: FileId, out_size: int, intent: Intent | None) -> Checkpoint:
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
            self._block(self._out.error or "output refused", logging.ERROR)
            return False
        return True

    def _block(self, reason: str, level: int) -> None:
        if self._status in (Status.FINISHED, Status.STOPPED):
            return
        self._status = Status.BLOCKED
        if self._blocked is None:
            self._blocked = (reason, level)

    def _report_block(self) -> None:
        """Log a block reason once when it appears or changes, and once when it is over."""
        if self._blocked is not None:
            reason, level = self._blocked
            if reason != self._error:
                log.log(level, reason, extra={"source": self._key, "output": str(self.output)})
            self._error = reason
        elif self._error is not None:
            if self._status is Status.ACTIVE:
                log.info("resumed", extra={"source": self._key, "after": self._error})
            self._error = None

    # ----------------------------------------------------------------------------------------------------
    # Start and recovery

    def _start(self, now: float) -> bool:
        """Open the files to read from the checkpoint, repairing an interrupted batch; False if not ready."""
        if not self._ready_output():
            return False
        checkpoint = self._store.load(self._key)
        try:
            anchor, rest = self._locate(checkpoint)
        except OSError as exc:
            self._block(f"source unusable: {exc}", logging.WARNING)
            return False
        if checkpoint is not None and checkpoint.intent is not None and not self._recover(checkpoint, anchor):
            for f in [anchor, *rest] if anchor else rest:
                os.close(f.fd)
            return False
        files = [anchor, *rest] if anchor else rest
        if not files:
            self._status = Status.WAITING
            return False
        self._cur, self._queue = files[0], files[1:]
        if self._pending is None:
            self._offset = self._cur.pos - self._asm.pending_bytes
        self._last_data, self._idle_done = now, False
        self._status = Status.ACTIVE
        self._dirty = self._urgent = True
        return True

    def _locate(self, ck: Checkpoint | None) -> tuple[_Open | None, list[_Open]]:
        """The checkpointed file positioned at its offset (or None), and the files to read after it."""
        path = self._open_path()
        if ck is None:
            return None, [path] if path else []
        ident = FileId(ck.dev, ck.ino)
        if path is not None and path.ident == ident and _matches(path.fd, ck):
            path.seek(ck.offset)
            return path, []
        strong = ck.head_len + min(ck.offset, MARK_BYTES) >= MIN_FINGERPRINT
        siblings = self._open_siblings(path.ident if path else None)
        if path is not None:
            # Taken again after the listing: a copy-truncate in between put what the path held into a copy
            # we will read; the path's head must describe what it holds now, or that copy comes twice.
            path.recapture_head()
        index = _find_file(siblings, ident, ck.offset, lambda fd: _matches(fd, ck), unique=not strong)
        if index is None:
            _close_all(siblings)
            what = "rewritten (inode reused or truncated)" if path and path.ident == ident else "gone"
            log.warning(
                f"checkpointed file is {what}; reading the current file from the start",
                extra={"source": self._key, "offset": ck.offset},
            )
            return None, [path] if path else []
        anchor = siblings[index]
        _close_all(siblings[:index])
        anchor.seek(ck.offset)
        rest = siblings[index + 1 :] + ([path] if path else [])
        log.info(
            "resuming in a rotated file",
            extra={"source": self._key, "file": anchor.name, "offset": ck.offset, "then": len(rest)},
        )
        return anchor, rest

    def _open_path(self) -> _Open | None:
        try:
            fd, st = open_regular(self._source)
        except FileNotFoundError:
            return None
        return _Open(fd, FileId.of(st), self._key)

    def _recover(self, ck: Checkpoint, anchor: _Open | None) -> bool:
        """Repair the batch an intent describes: write it, complete it, or accept it; False if blocked."""
        intent = ck.intent
        assert intent is not None
        regen = self._regenerate(ck, anchor) if anchor is not None else None
        inspectable = self._out.inspectable
        target: tuple[int, bool] | None = None
        done = 0  # a stream: what reached its reader is unknown, so the whole batch goes again
        if inspectable:
            target = self._find_output(Path(ck.output), FileId(ck.output_dev, ck.output_ino))
            done = intent.length
        if target is None and inspectable:
            log.warning(
                "interrupted batch: its output file is gone (rotated, compressed?); assuming it was written",
                extra={"source": self._key, "output": ck.output},
            )
        elif target is not None:
            done = os.fstat(target[0]).st_size - intent.output_size_before
            if done > intent.length or done < 0:
                log.warning(
                    "interrupted batch: output size is not what the checkpoint expects",
                    extra={"source": self._key, "output": ck.output, "difference": done},
                )
        mark = _SourceMark(FileId(ck.dev, ck.ino), ck.head_len, ck.head_hash, ck.mark_hash, ck.offset)
        if target is not None and 0 < done < intent.length and regen is not None:
            fd, owned = target
            if read_at(fd, done, intent.output_size_before) == regen.data[:done]:
                log.info("interrupted batch was torn; appending the rest", extra={"source": self._key})
                self._adopt(regen, intent, ck)
                self._pending = _Batch(
                    regen.file, mark, intent.read_end, intent.batch_end, intent.time_ns, intent.flush,
                    regen.data, regen.pieces, intent=intent, fd=fd, owned_fd=owned, written=done,
                )  # fmt: skip
                return True
        if target is not None and target[1]:
            os.close(target[0])
        if done <= 0 and regen is not None:
            what = (
                "was not written; writing it"
                if inspectable
                else "may be partly on the stream; writing it again"
            )
            log.info(f"interrupted batch {what}", extra={"source": self._key})
            self._adopt(regen, intent, ck)
            self._pending = _Batch(
                regen.file, mark, intent.read_end, intent.batch_end, intent.time_ns, intent.flush,
                regen.data, regen.pieces,
            )  # fmt: skip
            return True
        return self._accept(ck, anchor, regen, target, done)

    def _accept(
        self,
        ck: Checkpoint,
        anchor: _Open | None,
        regen: _Regenerated | None,
        target: tuple[int, bool] | None,
        done: int,
    ) -> bool:
        """The interrupted batch is written, or cannot be repaired: record that, then go on after it."""
        intent = ck.intent
        assert intent is not None
        torn = target is not None and 0 < done < intent.length
        if done <= 0 and (target is not None or not self._out.inspectable):
            log.error("interrupted batch lost: its source is gone", extra={"source": self._key})
        mark = ck.mark_hash
        if anchor is not None:
            start = max(0, intent.batch_end - MARK_BYTES)
            mark = fingerprint(os.pread(anchor.fd, intent.batch_end - start, start))
        try:  # saved first so that a restart does not repair it twice
            self._store.save(dataclasses.replace(ck, offset=intent.batch_end, mark_hash=mark, intent=None))
        except OSError as exc:
            self._block(f"cannot save checkpoint: {exc}; will retry", logging.ERROR)
            return False
        if torn:
            log.error(
                "interrupted batch was torn and its source is gone or changed: ending the torn line",
                extra={"source": self._key, "output": ck.output},
            )
            self._append_newline(Path(ck.output), FileId(ck.output_dev, ck.output_ino))
        if anchor is not None:
            if regen is not None:
                self._adopt(regen, intent, ck)
            else:
                anchor.seek(intent.batch_end)
        return True

    def _adopt(self, regen: _Regenerated, intent: Intent, ck: Checkpoint) -> None:
        """Go on from the state right after the batch: the rebuilt assembler, the file at its read end."""
        self._asm = regen.assembler
        regen.file.seek(intent.read_end)
        self._offset = ck.offset

    def _regenerate(self, ck: Checkpoint, anchor: _Open) -> _Regenerated | None:
        """The batch of ``ck.intent`` made again from the source, or None if the source no longer has it."""
        intent = ck.intent
        assert intent is not None
        encode = ENCODERS.get(ck.format)
        raw = read_at(anchor.fd, intent.read_end - ck.offset, ck.offset)
        if encode is None or len(raw) != intent.read_end - ck.offset:
            return None
        asm = LineAssembler(self._max_piece)
        ts = format_timestamp(intent.time_ns)
        fed = asm.feed(raw)
        data, pieces = encode(fed, ts), len(fed)
        if intent.flush != "none":
            flushed = asm.flush(final=intent.flush == "final")
            data, pieces = data + encode(flushed, ts), pieces + len(flushed)
        if len(data) != intent.length or intent.read_end - asm.pending_bytes != intent.batch_end:
            log.error("interrupted batch cannot be rebuilt from its source", extra={"source": self._key})
            return None
        return _Regenerated(anchor, asm, data, pieces)

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
            log.error("cannot end the torn line", extra={"source": self._key, "error": str(exc)})
        finally:
            if owned:
                os.close(fd)


def _find_file(
    files: list[_Open],
    ident: FileId | None,
    size: int,
    matches: Callable[[int], bool],
    *,
    unique: bool = False,
) -> int | None:
    """Index of the file that is ``ident`` (renamed), else of the newest whose content ``matches``; with
    ``unique``, only if no other file matches too (the content known is too short to tell them apart)."""

    def fits(i: int) -> bool:
        return os.fstat(files[i].fd).st_size >= size and matches(files[i].fd)

    by_inode = [i for i, f in enumerate(files) if f.ident == ident]
    for i in by_inode:
        if fits(i):
            return i
    found = (i for i in reversed(range(len(files))) if i not in by_inode and fits(i))
    first = next(found, None)
    if unique and next(found, None) is not None:
        return None
    return first


def _close_all(files: Iterable[_Open]) -> None:
    for f in files:
        os.close(f.fd)


def _matches(fd: int, ck: Checkpoint) -> bool:
    """Does the file hold what the checkpoint saw: its size, its head, the bytes before the offset?"""
    if os.fstat(fd).st_size < ck.offset:
        return False
    if fingerprint(os.pread(fd, ck.head_len, 0)) != ck.head_hash:
        return False
    start = max(0, ck.offset - MARK_BYTES)
    return fingerprint(os.pread(fd, ck.offset - start, start)) == ck.mark_hash
