"""The output: kubelet's rotation of it, pod deletion, the format already in it."""

from __future__ import annotations

import logging
import shutil

import pytest

from stats_log_collector.tail.tailer import Status
from tests.tail.tailing import Env


def test_output_renamed_away_by_kubelet_is_reopened(env: Env) -> None:
    t = env.tailer()
    env.append(b"one\n")
    env.poll(t)
    rotated = env.output.with_name(env.output.name + ".20261123-100000")
    env.output.rename(rotated)
    env.poll(t)  # noticed even with nothing to write: kubectl logs finds the path again
    assert env.output.exists()
    env.append(b"two\n")
    env.poll(t)
    assert env.rebuilt(rotated) == b"one\n"
    assert env.rebuilt(rotated, env.output) == env.expected()


def test_output_deleted_is_recreated(cri: Env) -> None:
    t = cri.tailer()
    cri.append(b"one\n")
    cri.poll(t)
    cri.output.unlink()
    cri.append(b"two\n")
    cri.poll(t)
    assert cri.rebuilt() == b"two\n"


def test_output_directory_deleted_stops(cri: Env) -> None:
    t = cri.tailer()
    cri.append(b"one\n")
    cri.poll(t)
    shutil.rmtree(cri.output.parent)
    cri.append(b"two\n")
    p = cri.poll(t)
    assert p.status is Status.STOPPED
    assert t._out.fd is None and t._cur is None
    assert not cri.output.parent.exists()  # never created by us
    assert cri.poll(t).status is Status.STOPPED


def test_output_directory_missing_at_start(cri: Env) -> None:
    shutil.rmtree(cri.output.parent)
    assert cri.poll(cri.tailer()).status is Status.STOPPED


@pytest.mark.parametrize(
    "existing", [b'{"log":"x\\n","stream":"stdout","time":"2026-11-23T10:00:00Z"}\n', b"junk\n"]
)
def test_output_in_another_format_is_refused(
    cri: Env, existing: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cri.output.write_bytes(existing)
    cri.append(b"line\n")
    t = cri.tailer()
    with caplog.at_level(logging.ERROR):
        p = cri.poll(t)
        cri.poll(t)
    assert p.status is Status.BLOCKED and "not mixing formats" in (p.error or "")
    assert caplog.text.count("not mixing formats") == 1
    assert cri.output.read_bytes() == existing
    cri.output.unlink()
    assert cri.poll(t).status is Status.ACTIVE
    assert cri.rebuilt() == b"line\n"


def test_existing_output_in_the_same_format_is_appended_to(env: Env) -> None:
    t = env.tailer()
    env.append(b"first run\n")
    env.poll(t)
    t.close()
    shutil.rmtree(env.state)  # a logger without its state: it starts over, but appends
    env.state.mkdir()
    before = env.output.read_bytes()
    env.drain(env.tailer())
    assert env.output.read_bytes().startswith(before)
