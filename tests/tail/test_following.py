"""Following a growing file: lines, long lines, partial lines, the byte budget."""

from __future__ import annotations

import pytest

from stats_log_collector.tail.tailer import Status
from tests.kubelet_logs import read_log_file
from tests.tail.tailing import SAMPLE, Env


def test_follows_a_growing_file(env: Env) -> None:
    t = env.tailer()
    env.append(SAMPLE)
    p = env.poll(t)
    assert p.status is Status.ACTIVE and p.read == len(SAMPLE) and p.pieces > 5
    for i in range(50):
        env.append(b"line %d\r\n" % i)
        env.poll(t)
    assert env.rebuilt() == env.expected()


def test_long_line_is_cut_into_16k_pieces(cri: Env) -> None:
    t = cri.tailer()
    cri.append(b"y" * 40000 + b"\n")
    cri.poll(t)
    entries = read_log_file(cri.output, expect="cri")
    assert [len(e.text) for e in entries] == [16384, 16384, 40000 - 32768 + 1]
    assert [e.partial for e in entries] == [True, True, False]


def test_unterminated_line_waits_for_newline_or_idle_second(cri: Env) -> None:
    t = cri.tailer()
    cri.append(b"login: ")
    p = cri.poll(t)
    assert p.written == 0 and p.flush_at == pytest.approx(cri.now + 1.0)
    assert cri.poll(t, 0.5).written == 0
    p = cri.poll(t, 0.6)  # 1.1 s idle: written as a partial piece
    assert p.pieces == 1 and p.flush_at is None
    cri.append(b"root\r\n")
    cri.poll(t)
    entries = read_log_file(cri.output, expect="cri")
    assert [(e.partial, e.text) for e in entries] == [(True, b"login: "), (False, b"root\n")]


def test_budget_limits_one_poll(cri: Env) -> None:
    t = cri.tailer(chunk_bytes=4096, poll_budget=10000)
    cri.append(b"z" * 99 + b"\n" * 1 + (b"a" * 99 + b"\n") * 500)
    p = cri.poll(t)
    assert p.more and p.read < 20000 and p.behind > 0
    cri.drain(t)
    assert cri.rebuilt() == cri.expected()


def test_progress_behind_counts_unread_bytes(cri: Env) -> None:
    t = cri.tailer(chunk_bytes=1000, poll_budget=1000)
    cri.append(b"q" * 4999 + b"\n")
    p = cri.poll(t)
    assert p.behind == 4000
