"""A full disk, on a real small filesystem: the tailer blocks, retries and loses nothing."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stats_log_collector.tail.tailer import Status
from tests.tail.tailing import Env, abandon


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN): {exc}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Take every free byte of the filesystem."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("crash_while_full", [False, True])
def test_full_disk_blocks_and_loses_nothing(
    tmp_path: Path, small_fs: Path, caplog: pytest.LogCaptureFixture, crash_while_full: bool
) -> None:
    env = Env(tmp_path, "cri")
    env.output = small_fs / "uid-1" / "vm_0.log"
    env.output.parent.mkdir()
    t = env.tailer()
    env.append(b"before the disk filled up\n")
    env.poll(t)
    filler = fill(small_fs)
    for i in range(400):  # ~100 KiB, in one batch
        env.append(b"%06d " % i + b"m" * 200 + b"\r\n")
    with caplog.at_level(logging.ERROR):
        p = env.poll(t)
        assert p.status is Status.BLOCKED and "disk full" in (p.error or "")
        assert env.poll(t).status is Status.BLOCKED
    assert caplog.text.count("output disk full") == 1  # logged once, retried on every poll
    if crash_while_full:  # killed while blocked: the intent on disk covers the batch, maybe torn
        abandon(t)
        t = env.tailer()
        assert env.poll(t).status is Status.BLOCKED
    env.append(b"written while full\n")
    filler.unlink()
    with caplog.at_level(logging.INFO):
        env.drain(t)
    assert "resumed" in caplog.text
    assert env.rebuilt() == env.expected()
