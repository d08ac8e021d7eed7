"""Finding the raw console logs of a node and keeping one ``Tailer`` per file busy, in one process.

Virtlet's logger listed the log directory every SLEEP_SECONDS and started a worker per file, so a new VM's
console took up to 10 s to appear and each cycle restarted the workers. Here inotify tells us at once
(inotify_simple had the lowest latency and CPU of the watchers measured), and the periodic rescan only
backs it up: after an IN_Q_OVERFLOW, or for anything inotify cannot see (a pod directory made on another
mount, a watch that could not be added because a limit was reached).

What is watched:
* the source root, for new sandbox directories;
* each sandbox directory, for new, written, renamed and deleted console files;
* the pod log root, for the pod directories kubelet creates, which sources wait for, and each such
  directory of a waiting source, for the container directory kubelet 1.10 and later make (paths.py).

Everything runs on the asyncio loop thread: ``Tailer.poll`` does plain reads and appends on regular files,
bounded by a byte budget, so the loop stays responsive; a tailer that hit its budget is polled again on the
next loop iteration, after the other files had their turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from inotify_simple import INotify, flags

from ..tail.slot_store import SlotFileStore
from ..tail.tailer import Progress, Status, Tailer
from ..tail_log import LoggingObserver
from .paths import (
    PodDirListing,
    PodLogDirs,
    Source,
    created_output_path,
    has_control_character,
    output_path,
    pod_dir_of,
    source_of,
)

log = logging.getLogger(__name__)

SOURCE_ROOT_EVENTS = flags.CREATE | flags.MOVED_TO | flags.DELETE_SELF | flags.MOVE_SELF | flags.ONLYDIR
SANDBOX_EVENTS = (
    flags.CREATE
    | flags.MODIFY
    | flags.MOVED_TO
    | flags.MOVED_FROM
    | flags.DELETE
    | flags.CLOSE_WRITE
    | flags.ATTRIB
    | flags.ONLYDIR
)
POD_DIR_EVENTS = flags.CREATE | flags.MOVED_TO | flags.MOVED_FROM | flags.DELETE | flags.ONLYDIR
_FILE_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFLNK: "a symlink",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


@dataclasses.dataclass
class WatcherStats:
    """Totals for the metrics endpoint and the summary log lines."""

    lines: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    errors: int = 0
    behind: int = 0  # source bytes not read yet, over all files, as of each file's last poll


@dataclasses.dataclass(frozen=True)
class WatcherConfig:
    source_root: Path
    pod_log_root: Path
    state_dir: Path
    log_format: str = "json"
    rescan_seconds: float = 10.0
    create_pod_log_dirs: bool = False


class ConsoleLogWatcher:
    """Maps every console file under ``source_root`` to its kubelet log, and keeps them in step."""

    def __init__(self, config: WatcherConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._observer = LoggingObserver(log)  # the engine's events, as this module's log lines
        self._store = SlotFileStore(config.state_dir, observer=self._observer)
        self._inotify = INotify()
        self._watches: dict[int, Path] = {}  # watch descriptor -> directory
        self._watched: dict[str, int] = {}
        self._tailers: dict[Path, Tailer] = {}
        self._paths: dict[str, Path] = {}  # the followed sources by path string (scans work on strings)
        self._listings: dict[str, tuple[int, list[str]]] = {}  # sandbox -> (its mtime, its *.log files)
        self._signatures: dict[str, tuple[int, int, int] | None] = {}  # source stat as of its last poll
        self._behind: dict[Path, int] = {}
        self._waiting: set[Path] = set()  # sources whose pod log directory does not exist yet
        self._pod_dirs = PodLogDirs()
        self._skipped: set[Path] = set()  # not regular files: warned about once, retried on rescans
        self._refused: set[str] = set()  # kubelet directories we will not use: warned about once
        self._timers: list[tuple[float, str]] = []  # (due, source): idle flushes
        self._again: set[Path] = set()  # sources that ran out of budget
        self._wakeup = asyncio.Event()
        self._resumed = False
        self.stats = WatcherStats()

    @property
    def files(self) -> int:
        """Console files being followed."""
        return len(self._tailers)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    # --- running -----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self._inotify.fileno(), self._on_inotify)
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(lambda _: self._wakeup.set())
        try:
            self.rescan()
            next_rescan = self._clock() + self._config.rescan_seconds
            while not stop.is_set():
                self._poll_again()
                self._fire_timers()
                now = self._clock()
                if now >= next_rescan:
                    self.rescan()
                    next_rescan = now + self._config.rescan_seconds
                timeout = 0.0 if self._again else self._sleep_until(next_rescan) - self._clock()
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, timeout)):
                        await self._wakeup.wait()
        finally:
            stopping.cancel()
            loop.remove_reader(self._inotify.fileno())
            self.close()

    def close(self) -> None:
        """Checkpoint and close every file: a held unterminated line is not written, but re-read later."""
        for tailer in self._tailers.values():
            tailer.close()
        self._tailers.clear()
        self._inotify.close()

    def _sleep_until(self, next_rescan: float) -> float:
        return min(next_rescan, self._timers[0][0]) if self._timers else next_rescan

    # --- discovering files -------------------------------------------------------------------------

    def rescan(self, *, everything: bool = False) -> None:
        """Look at everything again: new and vanished files, pod directories, files that changed.

        A sandbox directory is listed again only if its mtime changed, and a followed file is polled only
        if its inode, size or mtime changed since its last poll (or it is not in the plain following
        state), so that a node with thousands of idle consoles costs two stats per console per rescan;
        after an inotify overflow (``everything``) every directory is listed and every file polled.
        """
        root = self._config.source_root
        self._watch(self._config.pod_log_root, POD_DIR_EVENTS)
        self._pod_dirs = PodLogDirs(_names(self._config.pod_log_root))
        if self._watch(root, SOURCE_ROOT_EVENTS) is None:
            return
        seen: set[str] = set()
        listings: dict[str, tuple[int, list[str]]] = {}
        for sandbox, mtime in _subdirectories(root):
            self._watch(sandbox, SANDBOX_EVENTS)
            known = self._listings.get(sandbox)
            if everything or known is None or known[0] != mtime:  # entries added, removed or renamed
                known = (
                    mtime,
                    [os.path.join(sandbox, name) for name in _names(sandbox) if name.endswith(".log")],
                )
            listings[sandbox] = known
            for key in known[1]:
                seen.add(key)
                if key not in self._paths:
                    self._track(Path(key))
        self._listings = listings
        if not self._resumed:
            self._resume_checkpointed(seen)
        for key, path in list(self._paths.items()):
            # vanished files too: their tailer finishes what was left and reports it
            if everything or not self._unchanged(key):
                self.poll(path)
        self._waiting = {path for path in self._waiting if str(path) in seen}
        self._skipped = {path for path in self._skipped if str(path) in seen}

    def _unchanged(self, key: str) -> bool:
        tailer = self._tailers[self._paths[key]]
        return tailer.status is Status.ACTIVE and self._signatures.get(key) == _signature(key)

    def _resume_checkpointed(self, seen: set[str]) -> None:
        """At start, sources checkpointed but gone (deleted or rotated while we were down) are finished."""
        self._resumed = True
        for key in list(self._store.sources()):
            path = Path(key)
            if key in seen:
                continue
            source = source_of(self._config.source_root, path)
            if source is not None and self._output_for(source) is not None:
                self._track(path)  # its tailer reads what is left (rotated siblings too), then forgets it
            else:
                log.info("forgetting the checkpoint of a vanished source", extra={"source": key})
                self._store.forget(key)

    def _track(self, path: Path) -> None:
        """Start following ``path`` if its output can be placed, else remember it as waiting."""
        if path in self._tailers:
            return
        if has_control_character(path.name) and path.parent.parent == self._config.source_root:
            # before source_of, which ignores such a name silently: it is reported once
            self._skip(path, "refusing console log whose name holds a control character", "its name")
            return
        source = source_of(self._config.source_root, path)
        if source is None:
            return
        if not self._is_regular(path):
            return
        output = self._output_for(source)
        if output is None:
            if path not in self._waiting:
                log.info("waiting for kubelet's pod log directory", extra={"source": str(path)})
                self._waiting.add(path)
            return
        self._waiting.discard(path)
        # The sandbox folders are the VM side's: one swapped for a link to another folder is refused.
        self._tailers[path] = Tailer(
            path,
            output,
            self._store,
            fmt=self._config.log_format,
            observer=self._observer,
            beneath=self._config.source_root,
        )
        self._paths[str(path)] = path
        log.info("following", extra={"source": str(path), "output": str(output)})
        self.poll(path)

    def _is_regular(self, path: Path) -> bool:
        """Only regular files are consoles; anything else is reported once and looked at again later."""
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return False
        except OSError as exc:
            kind = f"unreadable: {exc.strerror}"
        else:
            if stat.S_ISREG(mode):
                self._skipped.discard(path)
                return True
            kind = _FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")
        self._skip(path, "skipping console log that is not a regular file", kind)
        return False

    def _skip(self, path: Path, message: str, kind: str) -> None:
        """Report a console we do not follow once (and count it); it is looked at again on rescans."""
        if path not in self._skipped:
            self._skipped.add(path)
            self.stats.errors += 1
            log.warning(message, extra={"source": str(path), "kind": kind})

    def _output_for(self, source: Source) -> Path | None:
        """The kubelet log ``source`` goes to (paths.py decides the layout); None: wait for kubelet."""
        root = self._config.pod_log_root
        pod_dir = pod_dir_of(source, self._pod_dirs)
        listing = PodDirListing()
        if pod_dir is not None:
            found = self._listing(root / pod_dir)
            if found is None:
                return None  # not a real directory: never followed, never created over
            listing = found
            output = output_path(root, source, pod_dir, listing)
            if output is not None:
                return output
            # Waiting for the container directory kubelet makes just before it creates the container.
            self._watch(root / pod_dir, POD_DIR_EVENTS)
            split = source.container_attempt
            if split is not None and split[0] in listing.others:
                self._refuse(root / pod_dir / split[0], "not a directory (a symlink?)")
        if not self._config.create_pod_log_dirs:
            return None
        created = created_output_path(root, source, pod_dir, listing)
        return created if created is not None and self._made_directory(created.parent) else None

    def _made_directory(self, directory: Path) -> bool:
        """CREATE_POD_LOG_DIRS: make ``directory``; one that cannot be made fails its console only."""
        try:
            directory.mkdir(parents=True, exist_ok=True)
            if stat.S_ISDIR(os.lstat(directory).st_mode):
                return True
        except OSError as exc:
            self._refuse(directory, f"cannot be created: {exc.strerror}")
            return False
        self._refuse(directory, "a symlink")  # made by someone else meanwhile: never followed
        return False

    def _listing(self, pod_dir: Path) -> PodDirListing | None:
        """What kubelet's pod log directory holds; None if it is not a real directory (a symlink is not)."""
        try:
            mode = os.lstat(pod_dir).st_mode
        except OSError:
            return None
        if not stat.S_ISDIR(mode):
            self._refuse(pod_dir, _FILE_KINDS.get(stat.S_IFMT(mode), "not a directory"))
            return None
        directories, files, others = set(), set(), set()
        try:
            with os.scandir(pod_dir) as entries:
                for entry in entries:
                    with contextlib.suppress(OSError):
                        if entry.is_dir(follow_symlinks=False):
                            directories.add(entry.name)
                        elif entry.is_file(follow_symlinks=False):
                            files.add(entry.name)
                        else:
                            others.add(entry.name)
        except OSError:
            return None
        return PodDirListing(frozenset(directories), frozenset(files), frozenset(others))

    def _refuse(self, directory: Path, kind: str) -> None:
        """A kubelet directory that is not a real one is never followed: warned about once."""
        if str(directory) not in self._refused:
            self._refused.add(str(directory))
            self.stats.errors += 1
            log.warning("refusing pod log directory", extra={"directory": str(directory), "kind": kind})

    def _watch(self, directory: Path | str, mask: int) -> int | None:
        key = str(directory)
        if key in self._watched:
            return self._watched[key]
        try:
            descriptor: int = self._inotify.add_watch(directory, mask)
        except FileNotFoundError:
            return None
        except OSError as exc:  # ENOSPC: max_user_watches reached; the rescan still covers it
            self.stats.errors += 1
            log.warning("cannot watch directory", extra={"directory": str(directory), "error": str(exc)})
            return None
        self._watches[descriptor] = Path(directory)
        self._watched[key] = descriptor
        return descriptor

    # --- events ------------------------------------------------------------------------------------

    def _on_inotify(self) -> None:
        events = self._inotify.read(timeout=0)
        for event in events:
            if event.mask & flags.Q_OVERFLOW:
                log.warning("inotify queue overflowed, rescanning")
                self.rescan(everything=True)
                continue
            directory = self._watches.get(event.wd)
            if directory is None:
                continue
            if event.mask & flags.IGNORED:  # the directory is gone
                del self._watches[event.wd]
                self._watched.pop(str(directory), None)
                continue
            self._on_event(directory, event.name, event.mask)
        self._wakeup.set()

    def _on_event(self, directory: Path, name: str, mask: int) -> None:
        if directory == self._config.source_root:
            if name and mask & flags.ISDIR:
                sandbox = directory / name
                self._watch(sandbox, SANDBOX_EVENTS)
                for path in _log_files(sandbox):
                    self._track(path)
            return
        if directory.parent == self._config.source_root:
            path = directory / name
            if path in self._tailers:
                self.poll(path)
            elif name.endswith(".log") and not mask & (flags.DELETE | flags.MOVED_FROM):
                self._track(path)
            # a rotated-away name (x.log.1) is read through the old handle by the tailer of x.log
            elif (base := _rotated_base(directory, name)) in self._tailers:
                self.poll(base)
            return
        if directory == self._config.pod_log_root and name:
            if mask & (flags.DELETE | flags.MOVED_FROM):
                self._pod_dirs.discard(name)
                self._poll_outputs_under(directory / name)  # the pod is gone: its tailers stop
            else:
                self._pod_dirs.add(name)
        # The pod log root or a pod directory changed: sources waiting for it may go now.
        for path in sorted(self._waiting):
            self._track(path)

    # --- polling -----------------------------------------------------------------------------------

    def poll(self, path: Path) -> None:
        tailer = self._tailers.get(path)
        if tailer is None:
            return
        key = str(path)
        self._signatures[key] = _signature(key)  # before reading: a later append changes it
        progress = tailer.poll(self._clock())
        self._account(path, progress)
        if progress.status in (Status.FINISHED, Status.STOPPED) or self._gone(path, progress):
            tailer.close()
            del self._tailers[path]
            del self._paths[key]
            self._signatures.pop(key, None)
            self.stats.behind -= self._behind.pop(path, 0)
            log.info("stopped following", extra={"source": str(path), "why": progress.status.value})
            return
        if progress.more:
            self._again.add(path)
        if progress.flush_at is not None:
            heapq.heappush(self._timers, (progress.flush_at, str(path)))

    def _gone(self, path: Path, progress: Progress) -> bool:
        """All written and the source's sandbox directory removed: the VM is gone, so is its checkpoint.

        (A source path that is only briefly absent, between a rotation's rename and the new file, keeps
        its tailer and checkpoint: the tailer goes on with the new file.)
        """
        if progress.status is not Status.WAITING or path.parent.is_dir():
            return False
        self._store.forget(str(path))
        return True

    def _poll_outputs_under(self, pod_dir: Path) -> None:
        for path, tailer in list(self._tailers.items()):
            if tailer.output.is_relative_to(pod_dir):
                self.poll(path)

    def _account(self, path: Path, progress: Progress) -> None:
        self.stats.lines += progress.pieces
        self.stats.bytes_read += progress.read
        self.stats.bytes_written += progress.written
        if progress.error:
            self.stats.errors += 1
        self.stats.behind += progress.behind - self._behind.get(path, 0)
        self._behind[path] = progress.behind

    def _poll_again(self) -> None:
        again, self._again = self._again, set()
        for path in again:
            self.poll(path)

    def _fire_timers(self) -> None:
        now = self._clock()
        while self._timers and self._timers[0][0] <= now:
            _, path = heapq.heappop(self._timers)
            self.poll(Path(path))


def _names(directory: Path | str) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError:
        return []


def _subdirectories(root: Path) -> list[tuple[str, int]]:
    """The directories in ``root`` with their mtime, which changes whenever an entry is added or removed."""
    found = []
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        found.append((entry.path, entry.stat(follow_symlinks=False).st_mtime_ns))
    except OSError:
        pass
    return found


def _log_files(sandbox: Path) -> list[Path]:
    return [sandbox / name for name in _names(sandbox) if name.endswith(".log")]


def _signature(path: str) -> tuple[int, int, int] | None:
    """What tells that a file changed (or was replaced) without reading it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _rotated_base(directory: Path, name: str) -> Path:
    """``x.log.1`` / ``x.log-20261123`` -> ``x.log`` (the file whose tailer reads the rotated one)."""
    head, separator, _ = name.partition(".log")
    return directory / (head + separator)
