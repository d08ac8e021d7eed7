"""``$DATA_DIR/mem-stats.csv`` (and ``vm-stats.csv``): appended whole rows only, bounded on disk,
served whole in one stream.

One ``os.write`` per poll on an ``O_APPEND`` fd; a torn last line is cut back on open; a file with
another header is renamed aside; past MAX_CSV_BYTES the file becomes a gzip archive, and archives past
MAX_ARCHIVE_BYTES are dropped oldest first. Why each rule: docs/memstat.md, "The CSV store: crash
safety and rotation". Row formatting is pure (``standard_row``, ``legacy_row``, ``encode_rows``).
A store is one file: its name, header and row encoder are a :class:`CsvLayout` (``mem-stats.csv`` by
default; ``vm-stats.csv`` holds the per-VM figures, ``VM_LAYOUT``).

Rotation and history reads coordinate through one lock: a read lists and opens its files under it, and
rotation's renames and removals take it, so a read sees every row kept when it started. The gzip itself
runs outside the lock, and in a thread when the store is ``background`` (memstat: not on the event loop).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import gzip
import io
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from .sample import COLUMNS, LEGACY_COLUMNS, Sample
from .vm_figures import VM_COLUMNS

log = logging.getLogger(__name__)

CSV_NAME = "mem-stats.csv"
ROTATING_NAME = CSV_NAME + ".rotating"  # the file being archived; finished on the next open after a crash
CHUNK = 1 << 20
_STAMPS = r"-(\d{8}T\d{6}\.\d{3}Z)-(\d{8}T\d{6}\.\d{3}Z)(?:-(\d+))?\.csv\.gz$"


@functools.cache
def _archive_pattern(stem: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(stem) + _STAMPS)  # one per CSV file: compiled once


_LEGACY_KB_FIELDS = LEGACY_COLUMNS[4:]  # RssAnon .. VmSwap, straight from /proc status (kB)
# Where a source has no status fields, the byte figures it does have fill the matching kB columns.
_LEGACY_FALLBACK = {
    "RssAnon": "rss_anon_bytes",
    "RssFile": "rss_file_bytes",
    "RssShmem": "rss_shmem_bytes",
    "VmHWM": "vm_hwm_bytes",
    "VmSize": "vm_size_bytes",
    "VmSwap": "swap_bytes",
}


# ---- pure row formatting ---------------------------------------------------------------------------


def format_timestamp(ts: datetime) -> str:
    """RFC3339 UTC with milliseconds: ``2026-11-23T10:00:00.000Z``."""
    utc = ts.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def header(fmt: str) -> tuple[str, ...]:
    return LEGACY_COLUMNS if fmt == "legacy" else COLUMNS


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return format_timestamp(value)
    # A newline inside a cell would make a quoted multi-line row that tail repair could cut in half.
    return str(value).replace("\r", " ").replace("\n", " ")


# A spreadsheet takes a cell starting with one of these for a formula (CSV injection:
# https://owasp.org/www-community/attacks/CSV_Injection). Any local user can name a QEMU ``=HYPERLINK(..)``.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ESCAPED_STARTS = (*_FORMULA_STARTS, "'")  # a name starting with ' is escaped too, so decoding is exact
_TEXT_COLUMNS = frozenset({"namespace", "vm", "pod", "node", "source", "process"})


def text_cell(text: str) -> str:
    """A text cell as the standard CSV stores it: a would-be formula gets a leading ``'`` (OWASP's advice)."""
    return "'" + text if text.startswith(_ESCAPED_STARTS) else text


def name_of_cell(cell: str) -> str:
    """The text a standard CSV text cell (parsed) stands for: the inverse of :func:`text_cell`."""
    return cell[1:] if cell.startswith("'") else cell


def csv_field_for_name(name: str, formula_safe: bool = True) -> str:
    """The raw bytes (as text) of the CSV field holding ``name``, CSV quoting included.

    ``?vm=`` filters compare the raw field, so they look for this rather than the name itself. The
    standard format is formula-safe (:func:`text_cell`); the legacy one writes names as they are.
    """
    cell = text_cell(_cell(name)) if formula_safe else _cell(name)
    # A second cell, so that an empty name is the empty field it is in a row, not csv's lone ``""``.
    return encode_rows([[cell, ""]]).decode("utf-8").removesuffix(",\n")


def standard_row(sample: Sample) -> list[str]:
    return _row(sample, COLUMNS)


def _row(values: object, columns: Sequence[str]) -> list[str]:
    """The cells of ``columns`` (attributes of ``values``): text cells formula-safe."""
    return [
        text_cell(_cell(value)) if column in _TEXT_COLUMNS else _cell(value)
        for column in columns
        for value in (getattr(values, column),)
    ]


def _legacy_kb(sample: Sample, field: str) -> int | None:
    if field in sample.status_kb:
        return sample.status_kb[field]
    attribute = _LEGACY_FALLBACK.get(field)
    value = getattr(sample, attribute) if attribute else None
    return None if value is None else int(value) // 1024


def legacy_row(sample: Sample) -> list[str]:
    """The original's row: vmName is the pod name, unix seconds, kB, RSS = RssAnon + RssFile.

    Without Kubernetes (procfs on a plain host) there is no pod: vmName is the VM's name, from QEMU's
    ``-name``. RSS falls back to the sample's RSS when the source has no anon/file breakdown (the
    kubelet source), so the one figure such a source has is not lost; other unknown values are empty.
    """
    anon, file = _legacy_kb(sample, "RssAnon"), _legacy_kb(sample, "RssFile")
    rss = anon + file if anon is not None and file is not None else sample.rss_bytes // 1024
    values = [_legacy_kb(sample, field) for field in _LEGACY_KB_FIELDS]
    return [
        _cell(sample.pod or sample.vm),
        _cell(sample.process),
        str(int(sample.timestamp.timestamp())),
        str(rss),
        *(_cell(v) for v in values),
    ]


def encode_rows(rows: Iterable[Sequence[str]]) -> bytes:
    """Complete CSV lines, ``\\n``-terminated, ready for one write."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def encode_samples(samples: Iterable[Sample], fmt: str) -> bytes:
    row = legacy_row if fmt == "legacy" else standard_row
    return encode_rows(row(s) for s in samples)


def header_line(fmt: str) -> bytes:
    return encode_rows([header(fmt)])


def file_stamp(ts: datetime) -> str:
    """A sortable, filename-safe UTC stamp: ``20261123T100000.000Z``."""
    utc = ts.astimezone(UTC)
    return utc.strftime("%Y%m%dT%H%M%S.") + f"{utc.microsecond // 1000:03d}Z"


def row_time(line: bytes, fmt: str) -> datetime | None:
    """The timestamp of one CSV data line, or None when it cannot be read."""
    try:
        cells = next(csv.reader([line.decode("utf-8", "replace")]))
        if fmt == "legacy":
            return datetime.fromtimestamp(int(cells[2]), UTC)
        return datetime.fromisoformat(cells[0].replace("Z", "+00:00"))
    except (StopIteration, IndexError, ValueError):
        return None


def archive_name(first: datetime, last: datetime, stem: str = "mem-stats") -> str:
    return f"{stem}-{file_stamp(first)}-{file_stamp(last)}.csv.gz"


def archive_last_time(name: str, stem: str = "mem-stats") -> datetime | None:
    """The time of the last row of an archive, from its name."""
    match = _archive_pattern(stem).match(name)
    if match is None:
        return None
    return datetime.strptime(match.group(2), "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)


def torn_tail_length(tail: bytes) -> int:
    """How many bytes after the last newline of ``tail`` (the end of the file) belong to a torn row."""
    return len(tail) - (tail.rfind(b"\n") + 1)


def sorted_archives(names: Iterable[str], stem: str = "mem-stats") -> list[str]:
    """Archive names among ``names``, oldest first: by first and last row time, then the -N of a clash."""
    pattern = _archive_pattern(stem)
    keyed = []
    for name in names:
        match = pattern.match(name)
        if match:
            keyed.append(((match.group(1), match.group(2), int(match.group(3) or 0)), name))
    return [name for _, name in sorted(keyed)]


def drop_over_budget(sizes: Sequence[tuple[str, int]], budget: int) -> list[str]:
    """Names to drop, oldest first, until the total of (name, size) pairs (oldest first) fits ``budget``."""
    total = sum(size for _, size in sizes)
    dropped = []
    for name, size in sizes:
        if total <= budget:
            break
        dropped.append(name)
        total -= size
    return dropped


@dataclasses.dataclass(frozen=True)
class CsvLayout:
    """What makes a store's file: its name (``<stem>.csv``, archives ``<stem>-<first>-<last>.csv.gz``),
    its header, how rows are encoded, and the row format the readers and filters expect."""

    stem: str
    fmt: str  # "standard" rows start timestamp,namespace,vm (what csv_routes filters on); or "legacy"
    columns: tuple[str, ...]
    encode: Callable[[Iterable[Any]], bytes]

    @property
    def name(self) -> str:
        return f"{self.stem}.csv"


def samples_layout(fmt: str) -> CsvLayout:
    """``mem-stats.csv``: one row per process (or container) sample, in CSV_FORMAT."""
    return CsvLayout("mem-stats", fmt, header(fmt), lambda samples: encode_samples(samples, fmt))


# ``vm-stats.csv``: one row per VM per poll (``vm_figures.VmFigures``), standard cells.
VM_LAYOUT = CsvLayout(
    "vm-stats", "standard", VM_COLUMNS, lambda rows: encode_rows(_row(row, VM_COLUMNS) for row in rows)
)


# ---- the store (I/O) ---------------------------------------------------------------------------------


class CsvStore:
    """The live CSV, its archives, and their history; one writer per DATA_DIR."""

    def __init__(
        self,
        data_dir: Path,
        fmt: str = "standard",
        max_csv_bytes: int = 1024**3,
        max_archive_bytes: int = 4 * 1024**3,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        background: bool = False,
        layout: CsvLayout | None = None,
    ) -> None:
        """``background``: a rotation that :meth:`append` starts gzips in a thread, and append returns.
        ``layout``: the file (``mem-stats.csv`` in ``fmt`` unless given)."""
        self.layout = layout or samples_layout(fmt)
        self.data_dir = Path(data_dir)
        self.fmt = self.layout.fmt
        self.max_csv_bytes = max_csv_bytes
        self.max_archive_bytes = max_archive_bytes
        self._clock = clock
        self._background = background
        self._header = encode_rows([self.layout.columns])
        self._fd: int | None = None
        self._size = 0
        # Held by a history read while it lists and opens its files, and by every rename or removal.
        self._files = threading.RLock()
        self._archiver: threading.Thread | None = None

    @property
    def path(self) -> Path:
        return self.data_dir / self.layout.name

    @property
    def _rotating(self) -> Path:
        """The file being archived; finished on the next open after a crash."""
        return self.data_dir / (self.layout.name + ".rotating")

    # -- opening

    def open(self) -> None:
        """Finish an interrupted rotation, set aside a foreign file, repair a torn tail, write the header."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        rotating = self._rotating
        if rotating.exists():
            self._archive(rotating)
        self._open_live()
        self._enforce_budget()  # MAX_ARCHIVE_BYTES may have been lowered since the last run

    def _open_live(self) -> None:
        self._set_aside_if_foreign()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._repair_tail(fd)
            size = os.fstat(fd).st_size
            if size == 0:
                os.write(fd, self._header)
                size = len(self._header)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._size = fd, size

    def _set_aside_if_foreign(self) -> None:
        try:
            with open(self.path, "rb") as f:
                first = f.readline(len(self._header) + 1)
        except FileNotFoundError:
            return
        if not first or first == self._header:
            return
        if not first.endswith(b"\n") and self._header.startswith(first):
            return  # our own header, torn by a crash: the tail repair empties the file
        aside = self.data_dir / f"{self.layout.name}.{file_stamp(self._clock())}.old"
        log.warning("%s has another header; moved aside to %s", self.layout.name, aside.name)
        os.rename(self.path, aside)

    def _repair_tail(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size == 0:
            return
        tail_start = max(0, size - CHUNK)
        torn = torn_tail_length(os.pread(fd, size - tail_start, tail_start))
        while torn == size - tail_start and tail_start > 0:  # a torn row longer than one chunk
            tail_start = max(0, tail_start - CHUNK)
            torn = torn_tail_length(os.pread(fd, size - tail_start, tail_start))
        if torn:
            log.warning(
                "%s ended with a torn row (%d bytes); cut back to the last whole row", self.layout.name, torn
            )
            os.ftruncate(fd, size - torn)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def wait_archived(self, timeout: float | None = None) -> bool:
        """Wait for a background archiving to end; False if it still runs after ``timeout`` seconds.

        Not needed before exiting: an archiving cut short is finished by the next :meth:`open`.
        """
        archiver = self._archiver
        if archiver is not None:
            archiver.join(timeout)
            return not archiver.is_alive()
        return True

    def __enter__(self) -> CsvStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- appending

    def append(self, samples: Iterable[Any]) -> int:
        """Append one poll's rows (what the layout encodes: Samples, VmFigures) in one write; rotate past
        MAX_CSV_BYTES. Returns the bytes written."""
        data = self.layout.encode(samples)
        if not data:
            return 0
        if self._fd is None:
            self.open()
        assert self._fd is not None
        try:
            written = os.write(self._fd, data)
        except OSError:
            self.close()  # the next append reopens, and so repairs whatever part reached the disk
            raise
        if written != len(data):
            self.close()
            raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
        self._size += written
        if self._size > self.max_csv_bytes:
            try:
                if self._background:
                    self._rotate_in_background()
                else:
                    self.rotate()
            except OSError:  # the rows are written; rotation is retried on the next append
                log.exception("rotating %s failed", self.layout.name)
        return written

    # -- rotation

    def rotate(self) -> None:
        """Archive the live file and start a new one; then drop archives over the budget."""
        self.wait_archived()
        rotating = self._rotating
        if rotating.exists():  # a previous archiving failed: finish it first, never overwrite it
            self._archive(rotating)
        self._switch_live(rotating)
        self._archive(rotating)

    def _rotate_in_background(self) -> None:
        """A new live file now; the old one gzipped in a thread (one at a time: the new one may grow)."""
        if self._archiver is not None and self._archiver.is_alive():
            return
        rotating = self._rotating
        if not rotating.exists():  # else a previous archiving failed: finish it, the switch comes next time
            self._switch_live(rotating)
        self._archiver = threading.Thread(
            target=self._archive_logged, args=(rotating,), name=f"{self.layout.stem}-archiver", daemon=True
        )
        self._archiver.start()

    def _archive_logged(self, rotating: Path) -> None:
        try:
            self._archive(rotating)
        except OSError:  # kept as .rotating: finished before the next rotation or on the next open
            log.exception("archiving %s failed", self.layout.name)

    def _switch_live(self, rotating: Path) -> None:
        with self._files:
            self.close()
            os.rename(self.path, rotating)
            self._open_live()  # new rows go to a fresh file while the old one is compressed

    def _archive(self, rotating: Path) -> None:
        first, last = self._time_range(rotating)
        if first is None or last is None:  # only a header: nothing worth keeping
            with self._files:
                rotating.unlink()
            return
        name = self._free_name(archive_name(first, last, self.layout.stem))
        tmp = self.data_dir / f".{name}.tmp"
        with open(rotating, "rb") as src, open(tmp, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
                shutil.copyfileobj(src, gz, CHUNK)
            raw.flush()
            os.fsync(raw.fileno())
        with self._files:  # a reader sees the rows either in the archive or in .rotating, never neither
            os.rename(tmp, self.data_dir / name)
            _fsync_dir(self.data_dir)  # the archive's name is durable before its source goes
            rotating.unlink()
        log.info("%s rotated to %s", self.layout.name, name)
        self._enforce_budget()

    def _free_name(self, name: str) -> str:
        candidate, n = name, 1
        while (self.data_dir / candidate).exists():
            candidate = name.replace(".csv.gz", f"-{n}.csv.gz")
            n += 1
        return candidate

    def _time_range(self, path: Path) -> tuple[datetime | None, datetime | None]:
        with open(path, "rb") as f:
            f.readline()  # header
            first = row_time(f.readline(), self.fmt)
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - 65536))
            lines = f.read().rstrip(b"\n").rsplit(b"\n", 1)
        return first, row_time(lines[-1], self.fmt) if first is not None else None

    def archives(self) -> list[Path]:
        """Kept archives, oldest first (their names start with the first row's time)."""
        return [self.data_dir / n for n in sorted_archives(os.listdir(self.data_dir), self.layout.stem)]

    def _enforce_budget(self) -> None:
        with self._files:
            sizes = [(p.name, p.stat().st_size) for p in self.archives()]
            dropped = drop_over_budget(sizes, self.max_archive_bytes)
            for name in dropped:
                with contextlib.suppress(FileNotFoundError):
                    (self.data_dir / name).unlink()
        for name in dropped:
            log.info("archive %s dropped: archives over MAX_ARCHIVE_BYTES", name)

    # -- reading

    def open_live_alone(self) -> int | None:
        """A descriptor of the live file when it holds every kept row (no archive, none being made).

        Opened under the lock rotation takes, so a rotation right after cannot hide rows from a reader of
        the descriptor (it keeps the renamed file); the caller closes it.
        """
        with self._files:
            if self.archives() or (self._rotating).exists():
                return None
            try:
                return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None

    def history(self, chunk_size: int = CHUNK, since: datetime | None = None) -> Iterator[bytes]:
        """Every kept row, archives oldest first, then a file being archived, then the live file.

        After one header, in chunks. Files are opened, under the lock rotation takes, before anything
        is yielded: a rotation or a dropped archive during a long download changes nothing in it, and
        none can fall between two files; the live file is read up to its last whole row at that moment.
        ``since`` leaves out the archives whose last row is older (their names say so): a filter
        then reads only what may match.
        """
        files: list[tuple[BinaryIO, int | None]] = []
        try:
            with self._files:
                for archive in self.archives():
                    last = archive_last_time(archive.name, self.layout.stem)
                    if since is not None and last is not None and last < since:
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        files.append((open(archive, "rb"), None))  # noqa: SIM115 - closed below
                for plain in (self._rotating, self.path):
                    with contextlib.suppress(FileNotFoundError):
                        opened = open(plain, "rb")  # noqa: SIM115 - closed below
                        files.append((opened, os.fstat(opened.fileno()).st_size))
            yield self._header
            for f, size in files:
                if size is None:
                    with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                        yield from _without_header(_chunks(gz, chunk_size))
                else:
                    yield from _without_header(_whole_rows(_chunks(f, chunk_size, size)))
        finally:
            for f, _ in files:
                f.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _chunks(f: BinaryIO | gzip.GzipFile, chunk_size: int, limit: int | None = None) -> Iterator[bytes]:
    remaining = limit
    while remaining is None or remaining > 0:
        chunk = f.read(chunk_size if remaining is None else min(chunk_size, remaining))
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def _without_header(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks of one file without its first line (every file repeats the header)."""
    pending = b""
    iterator = iter(chunks)
    for chunk in iterator:
        pending += chunk
        newline = pending.find(b"\n")
        if newline >= 0:
            if rest := pending[newline + 1 :]:
                yield rest
            break
    yield from iterator


def _whole_rows(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Chunks cut back to the last newline: a row being appended right now is left for the next read."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        cut = pending.rfind(b"\n") + 1
        if cut:
            yield pending[:cut]
            pending = pending[cut:]
