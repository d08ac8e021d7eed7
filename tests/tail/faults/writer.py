"""A console that never stops talking: numbered lines at a steady rate, optionally rotated.

Usage: ``writer.py PATH RECORD --lines N --rate LINES_PER_S [--rotate rename|copytruncate --rotate-every K]``.
The lines vary the way consoles do: short and empty ones, CRLF ends, escape codes, invalid UTF-8, and every
so often one longer than 16 KiB; some are written in two ``write`` calls, so a reader sees half a line.
Every byte written to PATH is also appended to RECORD, the expected input, in the same order.
Rotation happens between whole lines, done by this process itself so that no line is torn by it:
rename (``PATH.N`` -> ``PATH.N+1``, ``PATH`` -> ``PATH.1``, a new ``PATH``) or copy-truncate (copy to
``PATH.1``, then truncate ``PATH`` to 0; writes go on through the same descriptor, opened with O_APPEND).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import time
from pathlib import Path


def line(number: int, rng: random.Random) -> bytes:
    kind = number % 50
    if kind == 7:
        return (
            b"%08d long " % number
            + bytes(rng.choice(b"abcdef") for _ in range(rng.randrange(16400, 40000)))
            + b"\r\n"
        )
    if kind == 13:
        return b"\r\n"
    if kind == 21:
        return b"%08d bad utf-8 \xff\xfe \xe2\x82 \xc3(\r\n" % number
    if kind == 33:
        return b"\x1b[1;32m%08d OK\x1b[0m caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n" % number
    return b"%08d " % number + b"x" * rng.randrange(0, 300) + (b"\r\n" if number % 2 else b"\n")


def shift(path: Path) -> None:
    numbered = sorted(
        (int(p.name.rsplit(".", 1)[1]), p)
        for p in path.parent.glob(path.name + ".*")
        if p.name.rsplit(".", 1)[1].isdigit()
    )
    for n, p in reversed(numbered):
        p.rename(path.with_name(f"{path.name}.{n + 1}"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("record", type=Path)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--rotate", choices=["rename", "copytruncate"])
    parser.add_argument("--rotate-every", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    fd = os.open(args.path, flags, 0o644)
    with open(args.record, "ab") as record:
        start = time.monotonic()
        for number in range(args.lines):
            if args.rotate and args.rotate_every and number and number % args.rotate_every == 0:
                shift(args.path)
                if args.rotate == "rename":
                    args.path.rename(args.path.with_name(args.path.name + ".1"))
                    os.close(fd)
                    fd = os.open(args.path, flags, 0o644)
                else:
                    shutil.copyfile(args.path, args.path.with_name(args.path.name + ".1"))
                    os.ftruncate(fd, 0)
            data = line(number, rng)
            cut = rng.randrange(len(data)) if number % 5 == 0 else len(data)
            for part in (data[:cut], data[cut:]):
                if part:
                    os.write(fd, part)
            record.write(data)
            delay = start + (number + 1) / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
