"""Micro-benchmark of the virtlet-log formatting core (no file watching): CPU seconds per 1M console lines.

Reads a generated file of 1,000,000 lines of ~100 bytes (from the page cache) in 1 MiB chunks, as the logger
does, cuts it with LineAssembler, encodes every chunk's batch with one timestamp, and writes the result to
/dev/null. Compares with the targets (a quarter of rsyslog's CPU: ~1.2 s CRI, ~1.5 s JSON) and, with
--reference, with the naive ``json.dumps`` per line.

    .venv/bin/python bench/bench_formats.py [--lines N] [--runs 3] [--reference]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from stats_log_collector.tail.formats import (
    LineAssembler,
    encode_cri,
    encode_json,
    format_timestamp,
)

CHUNK = 1 << 20


def make_file(path: Path, lines: int, kind: str) -> int:
    """Write ``lines`` lines of ~100 bytes: ``plain`` LF text, or ``console`` (CRLF, colour codes, UTF-8)."""
    with open(path, "wb") as f:
        batch = []
        for i in range(lines):
            if kind == "plain":
                line = (
                    b"[%10.6f] virt-launcher[%d]: component ready, sequence %08d, status ok and all well"
                    % (
                        i / 1000,
                        1000 + i % 7,
                        i,
                    )
                )
                batch.append(line[:99] + b"\n")
            else:
                colour = b"\x1b[0;32m  OK  \x1b[0m" if i % 2 else b"\xe2\x9c\x93 d\xc3\xa9marr\xc3\xa9"
                line = b"[%s] Started unit %08d.service - Some Service Description Here." % (colour, i)
                batch.append(line[:98] + b"\r\n")
            if len(batch) == 10000:
                f.write(b"".join(batch))
                batch.clear()
        f.write(b"".join(batch))
    return path.stat().st_size


def run_once(path: Path, encode: Callable[..., bytes]) -> tuple[float, float, int]:
    """Read, cut, encode, write to /dev/null; return (wall s, CPU s, output bytes)."""
    asm = LineAssembler()
    out_bytes = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    fd = os.open(path, os.O_RDONLY)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        while chunk := os.read(fd, CHUNK):
            pieces = asm.feed(chunk)
            if pieces:
                out = encode(pieces, format_timestamp(time.time_ns()))
                out_bytes += len(out)
                os.write(null, out)
        pieces = asm.flush(final=True)
        if pieces:
            os.write(null, encode(pieces, format_timestamp(time.time_ns())))
    finally:
        os.close(fd)
        os.close(null)
    return time.perf_counter() - wall0, time.process_time() - cpu0, out_bytes


def run_reference(path: Path) -> tuple[float, float, int]:
    """The naive way: json.dumps per line, one timestamp per line."""
    out_bytes = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with open(path, "rb") as f, open(os.devnull, "wb") as null:
        for raw in f:
            text = raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8", "replace") + "\n"
            ts = format_timestamp(time.time_ns()).decode()
            out = (json.dumps({"log": text, "stream": "stdout", "time": ts}) + "\n").encode()
            out_bytes += len(out)
            null.write(out)
    return time.perf_counter() - wall0, time.process_time() - cpu0, out_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reference", action="store_true", help="also time json.dumps per line (slow)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        print(f"{args.lines:,} lines, median of {args.runs} runs, 1 MiB reads, output to /dev/null")
        print(
            f"{'input':8} {'format':6} {'MB in':>7} {'MB out':>7} {'wall s':>7} {'CPU s':>7} {'CPU s/1M':>9}"
        )
        for kind in ("plain", "console"):
            path = Path(tmp) / f"{kind}.log"
            size = make_file(path, args.lines, kind)
            path.read_bytes()  # warm the page cache
            cases: list[tuple[str, Callable[[], tuple[float, float, int]]]] = [
                ("cri", functools.partial(run_once, path, encode_cri)),
                ("json", functools.partial(run_once, path, encode_json)),
            ]
            if args.reference:
                cases.append(("dumps", functools.partial(run_reference, path)))
            for name, case in cases:
                results = [case() for _ in range(args.runs if name != "dumps" else 1)]
                wall = statistics.median(r[0] for r in results)
                cpu = statistics.median(r[1] for r in results)
                per_million = cpu * 1_000_000 / args.lines
                print(
                    f"{kind:8} {name:6} {size / 1e6:7.1f} {results[0][2] / 1e6:7.1f} {wall:7.2f} {cpu:7.2f}"
                    f" {per_million:9.2f}"
                )
        print("targets (1/4 of rsyslog's CPU, whole logger): CRI <= ~1.2 CPU s/1M, JSON <= ~1.5 CPU s/1M")


if __name__ == "__main__":
    main()
