"""The dashboard's series, kept in memory at a few fixed resolutions so a week answers at once.

Every VM's figure (summed over its processes per sample) goes into round-robin tables of bucket maxima,
one per resolution (:data:`LEVELS`), filled from the history on disk at startup and by every poll;
memory is bounded whatever the history's length, and an answer equals :func:`~.downsample.downsample`
over the same range. Why: docs/memstat.md, "The dashboard's in-memory series".
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import re
import threading
from array import array
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from .csvstore import name_of_cell
from .downsample import Series
from .sample import COLUMNS, Sample
from .vm_figures import VM_COLUMNS, VmFigures

log = logging.getLogger(__name__)

# Figures a chart can show: Sample field -> label.
FIGURES = {"rss_bytes": "RSS", "pss_bytes": "PSS", "working_set_bytes": "working set"}
# Per-VM figures (vm_figures.VmFigures field -> label), fed from each poll's figures, not from samples:
# a VM's overhead is not a sum over its processes.
VM_FIGURES = {"overhead_bytes": "overhead", "headroom_bytes": "headroom"}
CHART_FIGURES = {**FIGURES, **VM_FIGURES}
# The per-VM page's per-process series: an hour at 5 s and a day at 1 min (17 KB per process) rather
# than LEVELS' 90 days, since a VM has several processes and the dashboard's totals keep the long view.
PROCESS_LEVELS = ((5, 750), (60, 1450))
# (bucket width s, slots): 15 minutes at 1 s, an hour at 5 s, a day at 1 min, a week at 10 min, 90 days
# at 1 hour, each with a little more so that a range of exactly that length stays covered as buckets turn.
# Each level is as coarse as a chart of up to 2,000 points over its range needs (a day in 2,000 points is
# 43 s buckets: 60 s either way), since every slot is paid for every VM and figure (10,000 VMs).
LEVELS = ((1, 960), (5, 750), (60, 1450), (600, 1050), (3600, 2200))
RETENTION_SECS = LEVELS[-1][0] * LEVELS[-1][1]
FUTURE_SLACK_SECS = 60
# A slot is a 32-bit float, half a double: exact for every whole KiB up to 16 GiB (what kubelet and /proc
# report: pages, kB), within one part in 16 million above; a chart cannot show the difference, and
# 10,000 VMs' series take half the memory.
SLOT_TYPE = "f"
SLOT_BYTES = 4
_NAN = math.nan


def levels_for(interval_s: float, levels: Sequence[tuple[int, int]] = LEVELS) -> tuple[tuple[int, int], ...]:
    """The levels worth keeping for samples every ``interval_s``: a level finer than that holds at most one
    sample a bucket, no more than the next level does, and would cost its slots for every series (the
    1 s level is a ninth of all slots); the coarsest is always kept."""
    return tuple(level for level in levels if level[0] >= interval_s) or tuple(levels[-1:])


def series_name(namespace: str, vm: str) -> str:
    """How a VM is named in charts: ``namespace/vm``, or the bare name on a plain host."""
    return f"{namespace}/{vm}" if namespace else vm


def process_series_name(namespace: str, vm: str, process: str) -> str:
    """A process's series: NUL cannot be in a name, so no VM's prefix is another's."""
    return f"{namespace}\0{vm}\0{process}"


def _process_series(sample: Sample) -> str:
    return process_series_name(sample.namespace, sample.vm, sample.process)


class _Level:
    """One resolution: a ring of ``slots`` buckets of ``width`` seconds per series, one shared head."""

    def __init__(self, width: int, slots: int) -> None:
        self.width = width
        self.slots = slots
        self.head: int | None = None  # the newest bucket number (unix time // width) held
        self.rings: dict[tuple[str, str], array[float]] = {}  # (figure, series) -> max per slot

    def add(self, moment: float, totals: dict[tuple[str, str], float]) -> None:
        """One sample time's totals: the bucket and its slot are found once for all series."""
        bucket = int(moment // self.width)
        if self.head is None:
            self.head = bucket
        elif bucket > self.head:
            self._advance(bucket)
        elif bucket <= self.head - self.slots:
            return  # older than this resolution keeps
        slot = bucket % self.slots
        rings = self.rings
        for key, value in totals.items():
            ring = rings.get(key)
            if ring is None:
                ring = rings[key] = array(SLOT_TYPE, [_NAN]) * self.slots
            if not value <= ring[slot]:  # the slot is empty (NaN) or smaller
                ring[slot] = value

    def advance_to(self, moment: float) -> None:
        bucket = int(moment // self.width)
        if self.head is None:
            self.head = bucket
        elif bucket > self.head:
            self._advance(bucket)

    def _advance(self, bucket: int) -> None:
        assert self.head is not None
        cleared = min(bucket - self.head, self.slots)
        for ring in self.rings.values():
            for b in range(bucket - cleared + 1, bucket + 1):
                ring[b % self.slots] = _NAN
        self.head = bucket

    def values(self, figure: str, name: str, first: int, last: int) -> Iterator[tuple[int, float]]:
        """(bucket, max) of the non-empty buckets first..last that this level still holds."""
        ring = self.rings.get((figure, name))
        if ring is None or self.head is None:
            return
        for bucket in range(max(first, self.head - self.slots + 1), min(last, self.head) + 1):
            value = ring[bucket % self.slots]
            if value == value:  # not NaN
                yield bucket, value


@dataclasses.dataclass(frozen=True)
class Query:
    since: float  # unix seconds
    until: float
    points: int
    figure: str = "rss_bytes"
    name_filter: str = ""  # substring of the series name
    prefix: str = ""  # the series names must start with it; it is cut from the answer's names


class SeriesCache:
    """Per-VM series at :data:`LEVELS` resolutions; fed by polls, seeded once from the history.

    Thread-safe: seeding runs in a worker thread while polls and requests run on the event loop.
    """

    def __init__(self, levels: Sequence[tuple[int, int]] = LEVELS) -> None:
        self._levels = [_Level(width, slots) for width, slots in levels]
        self._lock = threading.Lock()
        self.seeded = False

    def add_totals(self, moment: float, totals: dict[tuple[str, str], float]) -> None:
        """One sample time's (figure, series) -> total."""
        with self._lock:
            for level in self._levels:
                level.add(moment, totals)

    def add_samples(self, samples: Iterable[Sample]) -> None:
        """A poll's samples (all of one time, usually): each VM's figures summed over its processes."""
        self._add_summed(
            (sample.timestamp, (figure, series_name(sample.namespace, sample.vm)), getattr(sample, figure))
            for sample in samples
            for figure in FIGURES
        )

    def add_figures(self, figures: Iterable[VmFigures]) -> None:
        """A poll's per-VM figures: :data:`VM_FIGURES`, where known (one per VM: nothing is summed)."""
        self._add_summed(
            (vm.timestamp, (figure, series_name(vm.namespace, vm.vm)), getattr(vm, figure))
            for vm in figures
            for figure in VM_FIGURES
        )

    def add_processes(self, samples: Iterable[Sample]) -> None:
        """A poll's samples per process (:func:`process_series_name`), the PIDs of one name summed."""
        self._add_summed((s.timestamp, ("rss_bytes", _process_series(s)), s.rss_bytes) for s in samples)

    def _add_summed(self, values: Iterable[tuple[datetime, tuple[str, str], float | None]]) -> None:
        """(time, (figure, series), value) summed per time and key, None left out; one add per time."""
        by_time: dict[float, dict[tuple[str, str], float]] = {}
        for moment, key, value in values:
            totals = by_time.setdefault(moment.timestamp(), {})
            if value is not None:
                totals[key] = totals.get(key, 0.0) + value
        for moment_s, totals in by_time.items():
            self.add_totals(moment_s, totals)

    def seed(
        self,
        chunks: Iterable[bytes],
        fmt: str,
        now: float | None = None,
        stop: threading.Event | None = None,
        complete: bool = True,
    ) -> int:
        """Feed the rows of a history stream (header chunk first, as ``CsvStore.history``); rows read.

        ``fmt`` is ``standard`` or ``legacy`` (mem-stats.csv), or ``vm-stats`` (vm-stats.csv: the
        :data:`VM_FIGURES`). With ``now``, every level first moves to it, so the bulk of an old history
        costs only the levels that still keep it (a week goes into two levels, not five), and rows
        stamped after it are left out of the series (they stay in the CSV). ``complete=False``: another
        history is still to be read, the series are not ``seeded`` yet.
        """
        if now is not None:
            with self._lock:
                for level in self._levels:
                    level.advance_to(now)
        count = 0
        latest = math.inf if now is None else now + FUTURE_SLACK_SECS
        reader = vm_figures_per_sample(chunks) if fmt == "vm-stats" else totals_per_sample(chunks, fmt)
        for moment, totals, rows in reader:
            if stop is not None and stop.is_set():
                return count  # not seeded: the process is stopping
            count += rows
            if moment <= latest:  # rows from the future (a clock set back) would push out the present
                self.add_totals(moment, totals)
        self.seeded = self.seeded or complete  # False: another history is still to be read
        return count

    def query(self, query: Query) -> Series:
        """The series of ``query``: buckets aligned to the chosen level, an exact max over raw samples."""
        if query.until <= query.since or query.points <= 0:
            raise ValueError("need until > since and at least one point")
        with self._lock:
            level, width = self._pick(query)
            start = math.floor(query.since / width) * width
            buckets = max(1, math.ceil((query.until - start) / width))
            per_level = width // level.width
            first = int(start // level.width)
            last = math.ceil(query.until / level.width) - 1
            values: dict[str, list[float | None]] = {}
            for figure, name in list(level.rings):
                if (
                    figure != query.figure
                    or query.name_filter not in name
                    or not name.startswith(query.prefix)
                ):
                    continue
                series: list[float | None] = [None] * buckets
                found = False
                for bucket, value in level.values(figure, name, first, last):
                    index = (bucket - first) // per_level
                    current = series[index]
                    if current is None or value > current:
                        series[index] = value
                        found = True
                if found:
                    values[name[len(query.prefix) :]] = series
        return Series([start + index * width for index in range(buckets)], dict(sorted(values.items())))

    def _pick(self, query: Query) -> tuple[_Level, int]:
        """The level and bucket width (a whole number of the level's buckets) that come closest to the
        points asked for, among the levels that still cover ``since`` (the coarsest when none does: what
        is older is gone from memory as from the chart); a tie goes to the coarser level (fewer slots)."""
        wanted = (query.until - query.since) / query.points
        covering = [
            level
            for level in self._levels
            if level.head is None or (level.head - level.slots + 1) * level.width <= query.since
        ] or [self._levels[-1]]
        choices = [
            (level.width * max(1, math.ceil(wanted / level.width)), -level.width, level) for level in covering
        ]
        width, _, level = min(choices, key=lambda choice: choice[:2])
        return level, width

    def memory_bytes(self) -> int:
        """What the rings hold (4 bytes a slot), for the bench and /metrics."""
        with self._lock:
            return sum(SLOT_BYTES * level.slots * len(level.rings) for level in self._levels)


# ---- reading history rows (pure) ---------------------------------------------------------------------


def totals_per_sample(
    chunks: Iterable[bytes], fmt: str
) -> Iterator[tuple[float, dict[tuple[str, str], float], int]]:
    """(unix time, (figure, series) -> total over processes, rows) per sample time of a history stream.

    A poll's rows are written together, so its rows are contiguous: totals are flushed when the time
    changes. The first chunk is the header. Rows that cannot be read are skipped. The columns are cut
    out of each block by one regex (C speed: a week of 100 VMs is 12 million rows); a block holding a
    quoted cell goes through the csv module instead.
    """
    legacy = fmt == "legacy"
    times: dict[bytes, float | None] = {}  # one time per poll: its text is parsed once
    names: dict[tuple[bytes, bytes], tuple[tuple[str, str], ...]] = {}  # -> its (figure, series) keys
    scale = 1024.0 if legacy else 1.0  # the original's kB
    current: bytes | None = None
    moment: float | None = None
    totals: dict[tuple[str, str], float] = {}
    rows = 0
    for block in _blocks(chunks):
        if b'"' in block:
            matches = _quoted_rows(block, legacy)
        elif legacy:
            matches = [(stamp, b"", vm, rss, b"", b"") for vm, stamp, rss in _LEGACY_ROW.findall(block)]
        else:
            matches = _STANDARD_ROW.findall(block)
        for stamp, namespace, vm, rss, pss, working_set in matches:
            if stamp != current:
                if moment is not None and totals:
                    yield moment, totals, rows
                if len(times) > 4096:
                    times.clear()
                if stamp not in times:
                    times[stamp] = _parse_time(stamp, legacy)
                current, moment, totals, rows = stamp, times[stamp], {}, 0
            if moment is None:
                continue
            keys = names.get((namespace, vm))
            if keys is None:
                texts = (namespace.decode(errors="replace"), vm.decode(errors="replace"))
                if not legacy:  # the standard CSV escapes would-be formulas: the series has the real name
                    texts = (name_of_cell(texts[0]), name_of_cell(texts[1]))
                name = series_name(*texts)
                keys = names[(namespace, vm)] = tuple((figure, name) for figure in FIGURES)
            try:
                values = (float(rss) * scale if rss else None, float(pss) if pss else None,
                          float(working_set) if working_set else None)  # fmt: skip
            except ValueError:
                continue
            rows += 1
            for key, value in zip(keys, values, strict=True):
                if value is not None:
                    totals[key] = totals.get(key, 0.0) + value
    if moment is not None and totals:
        yield moment, totals, rows


_VM_CELLS = tuple(VM_COLUMNS.index(name) for name in ("timestamp", "namespace", "vm", *VM_FIGURES))


def vm_figures_per_sample(
    chunks: Iterable[bytes],
) -> Iterator[tuple[float, dict[tuple[str, str], float], int]]:
    """As :func:`totals_per_sample`, for vm-stats.csv's :data:`VM_FIGURES` (one row per VM and poll).

    Read with the csv module: one row per VM (not per process), and only at start, in a thread.
    """
    current: str | None = None
    moment: float | None = None
    totals: dict[tuple[str, str], float] = {}
    rows = 0
    for block in _blocks(chunks):
        for cells in csv.reader(block.decode("utf-8", "replace").splitlines()):
            if len(cells) != len(VM_COLUMNS):
                continue
            stamp, namespace, vm, *values = (cells[i] for i in _VM_CELLS)
            if stamp != current:
                if moment is not None:  # even with no figure known: its rows count
                    yield moment, totals, rows
                current, moment, totals, rows = stamp, _parse_time(stamp.encode(), False), {}, 0
            if moment is None:
                continue
            rows += 1
            name = series_name(name_of_cell(namespace), name_of_cell(vm))
            for figure, value in zip(VM_FIGURES, values, strict=True):
                if re.fullmatch(r"-?\d+", value):  # empty: unknown, no point
                    totals[(figure, name)] = float(value)
    if moment is not None:
        yield moment, totals, rows


# timestamp, namespace, vm, then rss_bytes (column 8), pss_bytes (12), working_set_bytes (16).
_STANDARD_ROW = re.compile(
    rb"^([^,\n]*),([^,\n]*),([^,\n]*),(?:[^,\n]*,){5}([^,\n]*),(?:[^,\n]*,){3}([^,\n]*),"
    rb"(?:[^,\n]*,){3}([^,\n]*)\r?$",
    re.MULTILINE,
)
# The original's vmName (the pod), process, unix seconds, RSS in kB: no namespace, RSS only.
_LEGACY_ROW = re.compile(rb"^([^,\n]*),[^,\n]*,([^,\n]*),([^,\n]*)(?:,|\r?$)", re.MULTILINE)


def _blocks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Whole-row blocks of a history stream (its first chunk is the header), whatever the chunk cuts."""
    iterator = iter(chunks)
    next(iterator, b"")
    pending = b""
    for chunk in iterator:
        block = pending + chunk
        cut = block.rfind(b"\n") + 1
        if cut:
            yield block[:cut]
        pending = block[cut:]
    if pending:
        yield pending + b"\n"


def _quoted_rows(block: bytes, legacy: bool) -> list[tuple[bytes, ...]]:
    """The regex's groups, read with the csv module (a quoted cell may hold a comma)."""
    found: list[tuple[bytes, ...]] = []
    for cells in csv.reader(block.decode("utf-8", "replace").splitlines()):
        if legacy and len(cells) >= 4:
            found.append((cells[2].encode(), b"", cells[0].encode(), cells[3].encode(), b"", b""))
        elif not legacy and len(cells) >= len(COLUMNS):
            found.append(tuple(cells[i].encode() for i in (0, 1, 2, 8, 12, 16)))
    return found


def _parse_time(stamp: bytes, unix: bool) -> float | None:
    try:
        if unix:
            return float(stamp)
        return datetime.fromisoformat(stamp.decode().replace("Z", "+00:00")).timestamp()
    except (ValueError, UnicodeDecodeError):
        return None
