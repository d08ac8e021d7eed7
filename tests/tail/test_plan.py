"""The recovery plan on its own: pure decisions from a checkpoint and facts about the files, no files."""

from __future__ import annotations

import dataclasses

import pytest

from stats_log_collector.tail.checkpoint import Checkpoint, FlushMode, Intent
from stats_log_collector.tail.fileid import FileId
from stats_log_collector.tail.formats import ENCODERS, LineAssembler, format_timestamp
from stats_log_collector.tail.observer import RepairAction
from stats_log_collector.tail.plan import (
    Candidate,
    RebuildFailure,
    Rebuilt,
    bytes_present,
    pick_file,
    plan_repair,
    rebuild_batch,
    resume_point,
)
from tests.tail.tailing import make_checkpoint

OURS = FileId(1, 10)  # the checkpointed file


def candidate(ino: int, size: int = 100, matches: bool = True) -> Candidate:
    return Candidate(FileId(1, ino), size, matches)


def checkpoint(offset: int = 50, head_len: int = 100, intent: Intent | None = None) -> Checkpoint:
    return make_checkpoint(offset, intent, ino=OURS.ino, head_len=head_len)


# --- which file to resume in ---------------------------------------------------------------------------


def test_the_checkpointed_inode_wins_over_a_newer_match() -> None:
    files = [candidate(11), candidate(OURS.ino), candidate(12)]
    assert pick_file(files, OURS, 50) == 1


def test_the_checkpointed_inode_with_other_content_is_passed_over() -> None:
    files = [candidate(11), candidate(OURS.ino, matches=False), candidate(12, matches=False)]
    assert pick_file(files, OURS, 50) == 0


def test_else_the_newest_match_that_is_long_enough() -> None:
    files = [candidate(11), candidate(12), candidate(13, size=10)]
    assert pick_file(files, None, 50) == 1


def test_nothing_matches() -> None:
    assert pick_file([candidate(11, matches=False)], OURS, 50) is None
    assert pick_file([], OURS, 50) is None


def test_unique_refuses_two_content_matches() -> None:
    files = [candidate(11), candidate(12)]
    assert pick_file(files, OURS, 50, unique=True) is None
    assert pick_file(files[:1], OURS, 50, unique=True) == 0


def test_resume_point_needs_a_unique_match_when_little_is_known() -> None:
    siblings = [candidate(11), candidate(12)]
    assert resume_point(checkpoint(offset=50, head_len=100), siblings) == 1  # enough known: the newest
    assert resume_point(checkpoint(offset=4, head_len=4), siblings) is None  # 8 bytes known: ambiguous
    assert resume_point(checkpoint(offset=4, head_len=4), siblings[:1]) == 0


# --- what to do with the interrupted batch -------------------------------------------------------------

INTENT = Intent(read_end=80, batch_end=80, time_ns=1, flush="none", output_size_before=1000, length=40)


def repair(output_size: int | None, *, inspectable: bool = True, rebuilt: bool = True, prefix: bool = True):
    return plan_repair(
        INTENT, inspectable=inspectable, output_size=output_size, rebuilt=rebuilt, prefix_matches=prefix
    )


def test_not_written_is_written() -> None:
    plan = repair(1000)
    assert (plan.action, plan.present, plan.lost, plan.end_torn_line) == (RepairAction.WRITE, 0, False, False)


def test_written_is_accepted() -> None:
    plan = repair(1040)
    assert plan.action is RepairAction.ACCEPT and plan.present == 40
    assert not (plan.lost or plan.end_torn_line or plan.size_mismatch or plan.output_missing)


def test_torn_gets_its_rest() -> None:
    plan = repair(1015)
    assert plan.action is RepairAction.APPEND_REST and plan.present == 15


def test_torn_with_another_prefix_or_no_source_ends_the_torn_line() -> None:
    for plan in (repair(1015, prefix=False), repair(1015, rebuilt=False)):
        assert plan.action is RepairAction.ACCEPT and plan.end_torn_line and not plan.lost


def test_not_written_and_its_source_gone_is_lost() -> None:
    plan = repair(1000, rebuilt=False)
    assert plan.action is RepairAction.ACCEPT and plan.lost


@pytest.mark.parametrize("output_size", [990, 1100])
def test_an_impossible_output_size_is_reported(output_size: int) -> None:
    plan = repair(output_size)
    assert plan.size_mismatch
    assert plan.action is (RepairAction.WRITE if output_size < 1000 else RepairAction.ACCEPT)


def test_output_file_gone_is_assumed_written() -> None:
    plan = repair(None)
    assert plan.action is RepairAction.ACCEPT and plan.output_missing and not plan.lost
    assert bytes_present(INTENT, None) == INTENT.length


def test_a_stream_gets_the_whole_batch_again() -> None:
    plan = repair(None, inspectable=False)
    assert plan.action is RepairAction.WRITE_AGAIN and plan.present == 0 and not plan.output_missing
    assert repair(None, inspectable=False, rebuilt=False).lost


# --- the batch made again ------------------------------------------------------------------------------


def batch_of(raw: bytes, flush: FlushMode = "none") -> tuple[Intent, bytes]:
    """What the tailer would have written and recorded for ``raw`` read at offset 50."""
    asm = LineAssembler(16)
    ts = format_timestamp(7)
    pieces = asm.feed(raw)
    data = ENCODERS["cri"](pieces, ts)
    if flush != "none":
        data += ENCODERS["cri"](asm.flush(final=flush == "final"), ts)
    read_end = 50 + len(raw)
    intent = Intent(read_end, read_end - asm.pending_bytes, 7, flush, 0, len(data))
    return intent, data


@pytest.mark.parametrize("flush", ["none", "idle", "final"])
def test_a_batch_is_rebuilt_byte_for_byte(flush: FlushMode) -> None:
    raw = b"one\r\ntwo\n" + b"a line longer than sixteen bytes\nunterminated"
    intent, data = batch_of(raw, flush)
    rebuilt = rebuild_batch(checkpoint(intent=intent), raw, 16)
    assert isinstance(rebuilt, Rebuilt)
    assert rebuilt.data == data
    assert intent.read_end - rebuilt.assembler.pending_bytes == intent.batch_end


def test_a_source_that_lost_the_range_cannot_rebuild() -> None:
    intent, _ = batch_of(b"one\ntwo\n")
    assert rebuild_batch(checkpoint(intent=intent), b"one\n", 16) is RebuildFailure.SOURCE_SHORT
    unknown = dataclasses.replace(checkpoint(intent=intent), format="syslog")
    assert rebuild_batch(unknown, b"one\ntwo\n", 16) is RebuildFailure.SOURCE_SHORT


def test_other_bytes_do_not_make_the_recorded_batch() -> None:
    intent, _ = batch_of(b"one\ntwo\n")
    assert rebuild_batch(checkpoint(intent=intent), b"one\ntwo!", 16) is RebuildFailure.MISMATCH
