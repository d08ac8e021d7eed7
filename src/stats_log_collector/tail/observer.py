"""What the tailing engine reports: one method per event, for the front ends to log and count.

The engine does not log: it calls its observer, and each front end decides what an event is worth (a log
line, a metric, nothing). :class:`Observer` is the interface, and
ignores every event itself: a front end overrides only what it cares about.

``source`` is always the followed path as given to the tailer; file names are the paths the files were
opened under (a rotated sibling's own name).
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path

__all__ = ["Block", "BlockKind", "Observer", "RepairAction"]


class BlockKind(enum.Enum):
    """Why a tailer cannot go on for now (it retries on its next poll)."""

    IO_ERROR = "io-error"
    SOURCE_UNUSABLE = "source-unusable"  # no permission, I/O error...
    SOURCE_REFUSED = "source-refused"  # a symbolic link, FIFO, device...: never followed
    OUTPUT_REFUSED = "output-refused"  # not a regular file, cannot be opened
    MIXED_FORMAT = "mixed-format"  # the output already holds another format
    CHECKPOINT_NOT_SAVED = "checkpoint-not-saved"
    DISK_FULL = "disk-full"
    WRITE_FAILED = "write-failed"


@dataclasses.dataclass(frozen=True, slots=True)
class Block:
    """A block reason: its kind and the sentence describing it (reported once while it lasts)."""

    kind: BlockKind
    message: str


class RepairAction(enum.Enum):
    """What recovery does with the batch a checkpoint's intent describes."""

    APPEND_REST = "append-rest"  # torn in a file: append exactly the missing suffix
    WRITE = "write"  # not written to the file: write it whole
    WRITE_AGAIN = "write-again"  # a stream, which cannot tell how much its reader got: write it whole
    ACCEPT = "accept"  # written, or not repairable: go on after it


class Observer:
    """The events of the engine (tailer, outputs, checkpoint store); each does nothing here.

    A front end subclasses it and overrides the events it reports; the engine's parts take one (this
    class itself when nobody listens)."""

    # Following and rotation

    def opened(self, source: str, file: str, offset: int) -> None:
        """A (re)start found the file to read and will read it from ``offset``."""

    def rotated(self, source: str, file: str, offset: int) -> None:
        """The file being read was finished (rotated, or its copy after a truncation): reading goes on with
        ``file`` (the next rotated sibling, or the file now at the source path) from ``offset``."""

    def truncated(self, source: str, offset: int, copy: str | None) -> None:
        """The file shrank or was rewritten at ``offset``; ``copy`` is where its rest is read from, if found
        (else what was appended after the last read is lost)."""

    def siblings_kept_moving(self, source: str) -> None:
        """Rotated files were renamed while being listed, too often to list them all."""

    def finished(self, source: str) -> None:
        """The source was deleted and all it held is written; its checkpoint is forgotten."""

    def output_gone(self, source: str, output: Path) -> None:
        """The output's directory is gone (the pod was deleted): the tailer stops."""

    def output_reopened(self, output: Path) -> None:
        """The output path no longer names the open file (kubelet rotated it): reopened."""

    def blocked(self, source: str, output: Path, block: Block) -> None:
        """The tailer cannot go on (disk full, mixed format...): reported once per reason."""

    def unblocked(self, source: str, block: Block) -> None:
        """The tailer goes on after ``block``."""

    def checkpoint_not_saved(self, source: str, error: str) -> None:
        """A commit failed; not blocking (the next intent commits it too)."""

    # Crash recovery

    def resumed_in_rotated(self, source: str, file: str, offset: int, then: int) -> None:
        """The checkpointed file was found renamed: it is finished first, then ``then`` newer files."""

    def checkpoint_file_lost(self, source: str, offset: int, rewritten: bool) -> None:
        """The checkpointed file is gone, or ``rewritten`` (same inode, other content): the current file is
        read from its start."""

    def resumed_from_output(self, source: str, output: str, offset: int) -> None:
        """No checkpoint: the output's last records were found in the current file, read from ``offset``."""

    def output_end_not_found(self, source: str, output: str, why: str) -> None:
        """No checkpoint, and where the output ends is not in the current file (``why``): it is read from its
        start."""

    def batch_output_gone(self, source: str, output: str) -> None:
        """The interrupted batch's output file cannot be found: assumed written."""

    def batch_output_size_mismatch(self, source: str, output: str, difference: int) -> None:
        """The output does not hold a prefix of the interrupted batch by its size (a corrupt record)."""

    def batch_not_rebuilt(self, source: str) -> None:
        """The interrupted batch made again from its source is not the batch the intent describes."""

    def batch_repaired(self, source: str, action: RepairAction) -> None:
        """The interrupted batch is written (again, or its rest) as ``action`` says."""

    def batch_lost(self, source: str) -> None:
        """The interrupted batch was not written and its source is gone."""

    def torn_line_ended(self, source: str, output: str) -> None:
        """A torn batch that cannot be completed: a newline ends its torn line."""

    def torn_line_not_ended(self, source: str, error: str) -> None:
        """... and that newline could not be written."""

    # The checkpoint store

    def checkpoint_unreadable(self, path: Path, error: str) -> None:
        """A checkpoint slot cannot be read (it is ignored)."""

    def checkpoint_corrupt(self, path: Path, error: str) -> None:
        """A checkpoint slot fails its CRC or validation (the other slot is used)."""

    def checkpoint_foreign(self, path: Path) -> None:
        """A checkpoint slot holds another source's record (ignored)."""
