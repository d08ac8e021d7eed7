"""Run one Tailer in a loop, as the real logger would, so that tests can ``kill -9`` it at any moment.

Usage: ``driver.py SOURCE OUTPUT STATE_DIR FORMAT [--until-idle] [--die POINT] [--log FILE]``.
It polls every 2 ms until killed. ``--until-idle`` exits (0) once nothing has moved for a while, to let a
test catch up after its writer stopped. ``--die`` kills the process itself with SIGKILL at a chosen step of
the first batch, to hit each crash window deterministically: ``after-intent``, ``mid-write`` (half the
batch on disk), ``after-write`` (all of it, no commit yet), ``after-commit``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from stats_log_collector.logsetup import TextFormatter
from stats_log_collector.tail import output
from stats_log_collector.tail.checkpoint import Checkpoint
from stats_log_collector.tail.slot_store import SlotFileStore
from stats_log_collector.tail.tailer import Tailer
from stats_log_collector.tail_log import LoggingObserver

IDLE_EXIT_SECONDS = 1.5


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    """Make the process kill itself at ``point``."""
    real_save = SlotFileStore.save
    real_write = output.write_some

    def save(self: SlotFileStore, ck: Checkpoint) -> None:
        real_save(self, ck)
        if (point == "after-intent" and ck.intent is not None) or (
            point == "after-commit" and ck.intent is None
        ):
            die()

    def write_some(fd: int, data: memoryview) -> int:
        if point == "mid-write":
            real_write(fd, data[: max(1, len(data) // 2)])
            die()
        n = real_write(fd, data)
        if point == "after-write":
            die()
        return n

    SlotFileStore.save = save  # type: ignore[method-assign,assignment]
    output.write_some = write_some


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("source", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("state", type=Path)
    parser.add_argument("fmt", choices=["cri", "json"])
    parser.add_argument("--until-idle", action="store_true")
    parser.add_argument("--log", type=Path, help="append INFO logs here (default: warnings to stderr)")
    parser.add_argument("--die", choices=["after-intent", "mid-write", "after-write", "after-commit"])
    args = parser.parse_args()
    handler = logging.FileHandler(args.log) if args.log else logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter())
    logging.basicConfig(level=logging.INFO if args.log else logging.WARNING, handlers=[handler])
    logging.info("driver started", extra={"pid": os.getpid()})
    if args.die:
        arm(args.die)
    observer = LoggingObserver(logging.getLogger("driver"))
    store = SlotFileStore(args.state, observer=observer)
    tailer = Tailer(args.source, args.output, store, fmt=args.fmt, observer=observer)
    quiet_since = time.monotonic()
    while True:
        now = time.monotonic()
        progress = tailer.poll(now)
        if progress.read or progress.written or progress.more or progress.flush_at is not None:
            quiet_since = now
        elif args.until_idle and now - quiet_since > IDLE_EXIT_SECONDS:
            tailer.close()
            return 0
        if not progress.more:
            time.sleep(0.002)


if __name__ == "__main__":
    sys.exit(main())
