"""``stats-log-collector console-tail``: one VM console log to stdout, as KubeVirt's guest-console-log.

KubeVirt logs a VM's serial console with virtlogd to ``/var/run/kubevirt-private/<vmi-uid>/virt-serial0-log``,
and a sidecar runs ``virt-tail`` to print that file to stdout, from which the container runtime writes the
CRI log that ``kubectl logs`` reads. This is the same job on the tailing engine
(:mod:`stats_log_collector.tail`), writing raw console text to a stream: back-pressure instead of buffering
(nothing dropped, one batch of memory), at least once across ``kill -9``, rotation by virtlogd followed.
What it guarantees and why: docs/tailing.md, "console-tail".

* **Waiting.** The file may not exist yet, nor its directory (virt-launcher makes both). Its directory is
  watched with inotify once it exists, and looked for every :data:`DIR_POLL_SECONDS` before that; there is
  no timeout, and one log line per wait, not one per check.
* **The state file.** ``STATE_FILE`` names the two checkpoint slots: ``<STATE_FILE>.a.json`` and
  ``<STATE_FILE>.b.json`` in its directory (created if missing), and the lock ``<STATE_FILE>.lock`` taken
  before anything else (one writer per state: a second instance exits 2). Without a state file the
  checkpoint lives in memory only and each start prints the current file from its beginning, as virt-tail
  does.
* **Rotation.** Only virtlogd's names are rotated files (``<file>.0``, ``<file>.1``...): a state file next
  to the console (``<file>.state.a.json``) is never taken for one.
* **Memory.** Nothing heavier than inotify_simple is imported (no asyncio, aiohttp or prometheus).
* **Stopping.** SIGTERM or SIGINT stops after the current batch, commits and exits 0. A write blocked on a
  reader that takes nothing is given up after :data:`WRITE_GRACE_SECONDS` (that batch is then written again
  after the restart); a second signal gives it up at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Final

from inotify_simple import INotify, flags

from ..config import ConfigError
from ..instance_lock import InstanceLock
from ..settings import ConsoleTailSettings
from ..tail.checkpoint import CheckpointStore, MemoryStore
from ..tail.fileid import Rotation
from ..tail.observer import Observer
from ..tail.slot_store import SlotFileStore
from ..tail.stream import StreamClosed, StreamOutput, WriteAborted
from ..tail.tailer import Progress, Status, Tailer
from ..tail_log import LoggingObserver

__all__ = [
    "CHUNK_BYTES",
    "DIR_POLL_SECONDS",
    "WRITE_GRACE_SECONDS",
    "ConsoleTail",
    "lock_state",
    "run",
    "state_store",
]

log = logging.getLogger(__name__)

#: Console bytes read, encoded and written as one batch; also what one poll handles before the loop looks
#: at signals again. Bounds the memory in use and what a ``kill -9`` can repeat.
CHUNK_BYTES: Final = 256 << 10
#: How often a missing directory of the console log is looked for (inotify cannot watch what is not there).
DIR_POLL_SECONDS: Final = 1.0
#: Backs up inotify (a missed event, a watch that could not be added): the file is polled this often anyway.
RECHECK_SECONDS: Final = 5.0
#: Retry period of a tailer that is blocked (the path is not a regular file, the state cannot be saved).
BLOCKED_RETRY_SECONDS: Final = 1.0
#: How long, after SIGTERM, a write blocked on a reader that takes nothing is waited for (we promise 5 s).
WRITE_GRACE_SECONDS: Final = 3.0

STDOUT: Final = 1
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # SIGHUP: no other meaning here
_DIR_EVENTS: Final = (
    flags.CREATE
    | flags.MODIFY
    | flags.CLOSE_WRITE
    | flags.MOVED_FROM
    | flags.MOVED_TO
    | flags.DELETE
    | flags.ATTRIB
    | flags.DELETE_SELF
    | flags.MOVE_SELF
    | flags.ONLYDIR
)


# --------------------------------------------------------------------------------------------------------
# Where the checkpoint lives


def state_store(state_file: Path | None, observer: Observer) -> CheckpointStore:
    """The checkpoint store for STATE_FILE (see the module docstring); OSError if it cannot be written."""
    if state_file is None:
        return MemoryStore()
    # its folder was made when the lock was taken (lock_state), the first thing run() does
    if not os.access(state_file.parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write in {state_file.parent}")
    return SlotFileStore(state_file.parent, name=state_file.name, observer=observer)


# --------------------------------------------------------------------------------------------------------
# The loop


class ConsoleTail:
    """Follows ``path`` into ``sink`` until stopped; see the module docstring."""

    def __init__(
        self,
        path: Path,
        store: CheckpointStore,
        sink: StreamOutput,
        *,
        state_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        observer: Observer | None = None,
    ) -> None:
        """``state_file`` is only named in the start line (``store`` keeps the state)."""
        self._observer: Observer = observer or LoggingObserver(log)
        self._path = path
        self._state_file = state_file
        self._store = store
        self._sink = sink
        self._clock = clock
        self._tailer = self._new_tailer()
        self._inotify = INotify()
        self._wd: int | None = None  # the watch on the file's directory, once it exists
        self._watch_error: str | None = None
        self._waiting: str | None = None  # what we wait for, as last logged
        self._stopping: str | None = None  # the signal that asks us to stop
        self._wakeup = -1
        self._poller = select.poll()

    def run(self) -> int:
        """Print the console until a stop signal or the reader's end; the exit code (0)."""
        with self._signals():
            where = str(self._state_file or "none (from the start of the file)")
            log.info("printing a console log to stdout", extra={"file": str(self._path), "state_file": where})
            try:
                self._loop()
            except StreamClosed as exc:
                log.warning("stdout is closed (its reader is gone): stopping", extra={"error": str(exc)})
            except WriteAborted:
                log.warning(
                    "stdout took nothing in time: stopping; the last batch goes again after a restart"
                )
            finally:
                self._tailer.close()
                self._inotify.close()
        log.info("stopped", extra={"bytes": self._sink.written})
        return 0

    def _new_tailer(self) -> Tailer:
        return Tailer(
            self._path,
            self._sink,
            self._store,
            fmt="raw",
            chunk_bytes=CHUNK_BYTES,
            poll_budget=CHUNK_BYTES,
            observer=self._observer,
            rotation=Rotation.NUMBERED,
        )

    def _loop(self) -> None:
        self._poller.register(self._inotify.fileno(), select.POLLIN)
        self._poller.register(self._wakeup, select.POLLIN)
        while self._stopping is None:
            self._watch_directory()
            progress = self._tailer.poll(self._clock())
            if progress.status is Status.FINISHED:  # deleted and all written: wait for the next one
                self._tailer = self._new_tailer()
            self._report(progress)
            if self._stopping is None:
                self._wait(self._timeout(progress))
        log.info("stopping", extra={"signal": self._stopping})

    def _timeout(self, progress: Progress) -> float:
        if progress.more:
            return 0.0
        timeout = RECHECK_SECONDS if self._wd is not None else DIR_POLL_SECONDS
        if progress.status is Status.BLOCKED:
            timeout = min(timeout, BLOCKED_RETRY_SECONDS)
        if progress.flush_at is not None:
            timeout = min(timeout, max(0.0, progress.flush_at - self._clock()))
        return timeout

    def _report(self, progress: Progress) -> None:
        """One line when a wait starts, one when the file is followed (again)."""
        if progress.status is Status.WAITING:
            what = "file" if self._path.parent.is_dir() else "directory"
            if what != self._waiting:
                where = self._path if what == "file" else self._path.parent
                log.info(f"waiting for the console log's {what} to appear", extra={"path": str(where)})
                self._waiting = what
        elif progress.status is Status.ACTIVE and self._waiting != "":
            log.info("following", extra={"file": str(self._path)})
            self._waiting = ""

    # ----------------------------------------------------------------------------------------------------
    # inotify on the file's directory

    def _watch_directory(self) -> None:
        if self._wd is not None:
            return
        try:
            self._wd = self._inotify.add_watch(self._path.parent, _DIR_EVENTS)
        except (FileNotFoundError, NotADirectoryError):
            return  # looked for again every DIR_POLL_SECONDS
        except OSError as exc:  # a watch limit: polling every DIR_POLL_SECONDS still works
            if str(exc) != self._watch_error:
                log.warning("cannot watch the console log's directory", extra={"error": str(exc)})
            self._watch_error = str(exc)
            return
        self._watch_error = None

    def _wait(self, timeout: float) -> None:
        """Until an inotify event, a signal or ``timeout`` seconds."""
        for fd, _ in self._poller.poll(max(0, int(timeout * 1000 + 0.999))):
            if fd == self._wakeup:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wakeup, 64):
                        pass
            else:
                self._on_events()

    def _on_events(self) -> None:
        """Any event means "poll"; only the directory itself going away needs handling."""
        for event in self._inotify.read(timeout=0):
            if event.wd != self._wd or self._wd is None:
                continue  # an overflow, or an old watch: the poll that follows covers it
            if event.mask & flags.IGNORED:  # the directory was deleted
                self._wd = None
            elif event.mask & flags.MOVE_SELF:  # renamed: the watch would follow it, not the path
                with contextlib.suppress(OSError):
                    self._inotify.rm_watch(self._wd)
                self._wd = None

    # ----------------------------------------------------------------------------------------------------
    # Signals

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """Stop signals set a flag and wake the loop up (a byte on a pipe); SIGALRM ends the grace period."""
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wakeup = read_end
        previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        previous = {signum: signal.signal(signum, self._on_stop_signal) for signum in STOP_SIGNALS}
        previous_alarm = signal.signal(signal.SIGALRM, self._on_alarm)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous_alarm)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(previous_fd)
            os.close(read_end)
            os.close(write_end)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping is not None:
            self._sink.abort_write()  # a second signal: give up a blocked write at once
            return
        self._stopping = signal.Signals(signum).name
        signal.setitimer(signal.ITIMER_REAL, WRITE_GRACE_SECONDS)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        # The grace period is over: give up a blocked write; if none is under way, look again shortly
        # (the loop is about to stop, unless the rest of its poll still writes).
        signal.setitimer(signal.ITIMER_REAL, 0.25)
        self._sink.abort_write()


def lock_state(state_file: Path) -> InstanceLock:
    """Hold ``<STATE_FILE>.lock`` (making its directory): InstanceLocked if another instance has it."""
    state_file.parent.mkdir(parents=True, exist_ok=True)
    lock_file = state_file.with_name(state_file.name + ".lock")
    return InstanceLock(lock_file, "STATE_FILE", state=state_file).acquire()


def run(config: ConsoleTailSettings) -> int:
    if config.file is None:  # cli.py prints a ConfigError as one line, exit code 2
        raise ConfigError("CONSOLE_LOG_FILE", "required (or --file): the console log to follow")
    # The first thing done with the state; cli.py turns InstanceLocked into one line and exit code 2.
    lock = lock_state(config.state_file) if config.state_file is not None else None
    try:
        sink = StreamOutput(STDOUT)
    except OSError as exc:
        log.error("stdout is not open", extra={"error": str(exc)})
        return 1
    observer = LoggingObserver(log)
    try:
        store = state_store(config.state_file, observer)
    except OSError as exc:
        log.error(
            "cannot keep the state file", extra={"state_file": str(config.state_file), "error": str(exc)}
        )
        return 1
    try:
        return ConsoleTail(config.file, store, sink, state_file=config.state_file, observer=observer).run()
    finally:
        if lock is not None:
            lock.release()
