"""The tailer's test bench: a source, its output and state on real files, crashes, rotations.

A crash is a :class:`Crash` raised from inside the real write path (it is not an ``OSError``, so nothing in
the tailer catches it), after which the tailer is abandoned without saving, as ``kill -9`` would leave it.
Outputs are parsed with the independent kubelet checker, rebuilt into console text and compared with what was
written to the source (CRLF folded; for JSON, decoded as Go does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stats_log_collector.tail import output as output_module
from stats_log_collector.tail.checkpoint import Checkpoint, CheckpointStore, Intent
from stats_log_collector.tail.formats import go_decode
from stats_log_collector.tail.slot_store import SlotFileStore
from stats_log_collector.tail.tailer import Progress, Tailer
from stats_log_collector.tail_log import LoggingObserver
from tests.kubelet_logs import read_log_file, rebuild

#: The engine's events as log lines, so that tests can assert on them (caplog).
OBSERVER = LoggingObserver(logging.getLogger(__name__))


class Crash(BaseException):
    """The process dies here."""


class Env:
    """A source, its output, a state directory, and a clock for the idle flush."""

    def __init__(self, root: Path, fmt: str = "cri") -> None:
        self.fmt = fmt
        self.source = root / "vms" / "uid-1" / "vm_0.log"
        self.output = root / "pods" / "uid-1" / "vm_0.log"
        self.state = root / "state"
        for d in (self.source.parent, self.output.parent, self.state):
            d.mkdir(parents=True, exist_ok=True)
        self.source.touch()
        self.now = 1000.0
        self.written = b""  # everything ever appended to the source, in order

    def tailer(self, store: CheckpointStore | None = None, **kwargs: Any) -> Tailer:
        """A tailer of the source; its store is the state directory's unless ``store`` is given."""
        kwargs.setdefault("fmt", self.fmt)
        kwargs.setdefault("observer", OBSERVER)
        store = store or SlotFileStore(self.state, observer=OBSERVER)
        return Tailer(self.source, self.output, store, **kwargs)

    def append(self, data: bytes, path: Path | None = None) -> None:
        with open(path or self.source, "ab") as f:
            f.write(data)
        self.written += data

    def poll(self, tailer: Tailer, advance: float = 0.0) -> Progress:
        self.now += advance
        return tailer.poll(self.now)

    def drain(self, tailer: Tailer) -> Progress:
        """Poll until nothing moves (the idle flush included)."""
        for _ in range(1000):
            p = self.poll(tailer, 2.0)
            if not (p.read or p.written or p.more):
                return p
        raise AssertionError("tailer does not settle")

    def rebuilt(self, *outputs: Path) -> bytes:
        return b"".join(rebuild(read_log_file(p, expect=self.fmt)) for p in outputs or (self.output,))  # type: ignore[arg-type]

    def expected(self, data: bytes | None = None) -> bytes:
        text = (self.written if data is None else data).replace(b"\r\n", b"\n")
        return go_decode(text).encode() if self.fmt == "json" else text

    def checkpoint(self) -> Checkpoint | None:
        return SlotFileStore(self.state).load(str(self.source))


def written_then_forgotten(env: Env, data: bytes) -> None:
    """``data`` appended and written to the output, then every checkpoint lost (deleted slots)."""
    t = env.tailer()
    env.append(data)
    env.drain(t)
    t.close()
    for slot in env.state.glob("*.json"):
        slot.unlink()


def make_checkpoint(
    offset: int,
    intent: Intent | None = None,
    source: str = "/var/log/vms/uid-1/vm_0.log",
    *,
    ino: int = 2,
    head_len: int = 10,
    output_size: int = 0,
) -> Checkpoint:
    """A record of made-up files: for stores and plans, which never open them."""
    return Checkpoint(
        source=source,
        dev=1,
        ino=ino,
        head_len=head_len,
        head_hash="h",
        mark_hash="m",
        offset=offset,
        output="/var/log/pods/uid-1/vm_0.log",
        output_dev=3,
        output_ino=4,
        output_size=output_size,
        format="cri",
        intent=intent,
    )


def assert_same(got: bytes, expected: bytes) -> None:
    """Equality, reported as the first difference with its surroundings (the inputs are megabytes)."""
    if got == expected:
        return
    at = next(
        (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
        min(len(got), len(expected)),
    )
    raise AssertionError(
        f"differ at byte {at} of {len(got)} (expected {len(expected)}):\n"
        f"got      {got[max(0, at - 80) : at + 80]!r}\nexpected {expected[max(0, at - 80) : at + 80]!r}"
    )


def abandon(tailer: Tailer) -> None:
    """Drop a tailer as a killed process would: no checkpoint saved, descriptors closed."""
    tailer._release()


# A console sample with the awkward parts: CRLF, escape codes, empty lines, invalid UTF-8, a long line.
SAMPLE = (
    b"\x1b[2J\x1b[01;01HSeaBIOS (version 1.16)\r\n"
    b"Booting from ROM...\r\n\r\n"
    b"caf\xc3\xa9 \xff\xfe bad bytes \xe2\x82\r\n" + b"x" * 40000 + b"\r\n" + b'quotes " and \\ and \t tabs\n'
)


@contextlib.contextmanager
def crash_in_write(monkeypatch: pytest.MonkeyPatch, after_bytes: int) -> Iterator[None]:
    """The next output write puts ``after_bytes`` of its data on disk, then the process dies."""
    real = output_module.write_some

    def dying_write(fd: int, data: memoryview) -> int:
        if after_bytes:
            real(fd, data[:after_bytes])
        raise Crash

    monkeypatch.setattr(output_module, "write_some", dying_write)
    yield
    monkeypatch.setattr(output_module, "write_some", real)


def rename_rotate(env: Env, keep: int = 5) -> None:
    """logrotate-style: x.log.N -> x.log.N+1, x.log -> x.log.1, a new empty x.log."""
    base = env.source
    for n in range(keep, 0, -1):
        older = base.with_name(f"{base.name}.{n}")
        if older.exists():
            older.rename(base.with_name(f"{base.name}.{n + 1}"))
    base.rename(base.with_name(base.name + ".1"))
    base.touch()


def copy_truncate(env: Env) -> None:
    base = env.source
    for n in range(5, 0, -1):
        older = base.with_name(f"{base.name}.{n}")
        if older.exists():
            older.rename(base.with_name(f"{base.name}.{n + 1}"))
    shutil.copyfile(base, base.with_name(base.name + ".1"))
    os.truncate(base, 0)
