"""The tailing engine's events as log lines, for the front ends that follow files (virtlet-log, console-tail).

The engine (:mod:`.tail`) reports and does not log; each front end logs the events under its own logger
through a :class:`LoggingObserver`, one line per event, with the same messages and fields everywhere.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from .tail.observer import Block, BlockKind, Observer, RepairAction

__all__ = ["LoggingObserver"]

_REPAIRS: Final = {
    RepairAction.APPEND_REST: "interrupted batch was torn; appending the rest",
    RepairAction.WRITE: "interrupted batch was not written; writing it",
    RepairAction.WRITE_AGAIN: "interrupted batch may be partly on the stream; writing it again",
}
#: Blocks that are about the source's side (the VM's files), not a fault of ours.
_WARNINGS: Final = (BlockKind.SOURCE_UNUSABLE, BlockKind.SOURCE_REFUSED)


class LoggingObserver(Observer):
    """Logs every event of the engine that an operator may need, to ``log``."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log

    def rotated(self, source: str, file: str, offset: int) -> None:
        self.log.info("source: next file", extra={"source": source, "file": file, "offset": offset})

    def truncated(self, source: str, offset: int, copy: str | None) -> None:
        if copy is None:
            self.log.warning(
                "source truncated and no copy found: what was appended after our last read is lost",
                extra={"source": source, "offset": offset},
            )
            return
        self.log.warning(
            "source truncated: finishing it from its copy, then reading it again from the start",
            extra={"source": source, "copy": copy, "offset": offset},
        )

    def siblings_kept_moving(self, source: str) -> None:
        self.log.warning("rotated files kept moving while listed", extra={"source": source})

    def finished(self, source: str) -> None:
        self.log.info("source deleted and fully written; forgetting it", extra={"source": source})

    def output_gone(self, source: str, output: Path) -> None:
        self.log.info("output directory is gone; stopping", extra={"source": source, "output": str(output)})

    def output_reopened(self, output: Path) -> None:
        self.log.info("output was rotated or removed, reopening", extra={"output": str(output)})

    def blocked(self, source: str, output: Path, block: Block) -> None:
        level = logging.WARNING if block.kind in _WARNINGS else logging.ERROR
        self.log.log(level, block.message, extra={"source": source, "output": str(output)})

    def unblocked(self, source: str, block: Block) -> None:
        self.log.info("resumed", extra={"source": source, "after": block.message})

    def checkpoint_not_saved(self, source: str, error: str) -> None:
        self.log.warning("cannot save checkpoint", extra={"source": source, "error": error})

    def resumed_in_rotated(self, source: str, file: str, offset: int, then: int) -> None:
        self.log.info(
            "resuming in a rotated file",
            extra={"source": source, "file": file, "offset": offset, "then": then},
        )

    def checkpoint_file_lost(self, source: str, offset: int, rewritten: bool) -> None:
        what = "rewritten (inode reused or truncated)" if rewritten else "gone"
        self.log.warning(
            f"checkpointed file is {what}; reading the current file from the start",
            extra={"source": source, "offset": offset},
        )

    def resumed_from_output(self, source: str, output: str, offset: int) -> None:
        self.log.warning(
            "no checkpoint: going on where the output ends in the source",
            extra={"source": source, "output": output, "offset": offset},
        )

    def output_end_not_found(self, source: str, output: str, why: str) -> None:
        self.log.warning(
            f"no checkpoint, and the output's end is not in the source ({why}): reading it from the start",
            extra={"source": source, "output": output},
        )

    def batch_output_gone(self, source: str, output: str) -> None:
        self.log.warning(
            "interrupted batch: its output file is gone (rotated, compressed?); assuming it was written",
            extra={"source": source, "output": output},
        )

    def batch_output_size_mismatch(self, source: str, output: str, difference: int) -> None:
        self.log.warning(
            "interrupted batch: output size is not what the checkpoint expects",
            extra={"source": source, "output": output, "difference": difference},
        )

    def batch_not_rebuilt(self, source: str) -> None:
        self.log.error("interrupted batch cannot be rebuilt from its source", extra={"source": source})

    def batch_repaired(self, source: str, action: RepairAction) -> None:
        message = _REPAIRS.get(action)
        if message is not None:
            self.log.info(message, extra={"source": source})

    def batch_lost(self, source: str) -> None:
        self.log.error("interrupted batch lost: its source is gone", extra={"source": source})

    def torn_line_ended(self, source: str, output: str) -> None:
        self.log.error(
            "interrupted batch was torn and its source is gone or changed: ending the torn line",
            extra={"source": source, "output": output},
        )

    def torn_line_not_ended(self, source: str, error: str) -> None:
        self.log.error("cannot end the torn line", extra={"source": source, "error": error})

    def checkpoint_unreadable(self, path: Path, error: str) -> None:
        self.log.error("cannot read checkpoint", extra={"path": str(path), "error": error})

    def checkpoint_corrupt(self, path: Path, error: str) -> None:
        self.log.warning("corrupt checkpoint ignored", extra={"path": str(path), "error": error})

    def checkpoint_foreign(self, path: Path) -> None:
        self.log.warning("checkpoint of another source ignored", extra={"path": str(path)})
