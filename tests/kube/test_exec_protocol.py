"""Decoding exec streams (channel.k8s.io): output channels and the final status."""

from __future__ import annotations

import json

import pytest

from stats_log_collector.kube.errors import ExecFailed
from stats_log_collector.kube.exec_protocol import ExecStream, exit_code_from_status


def status(code: int | None, message: str = "") -> bytes:
    if code == 0:
        return b"\x03" + json.dumps({"metadata": {}, "status": "Success"}).encode()
    body = {"metadata": {}, "status": "Failure", "message": message, "reason": "NonZeroExitCode"}
    if code is not None:
        body["details"] = {"causes": [{"reason": "ExitCode", "message": str(code)}]}
    return b"\x03" + json.dumps(body).encode()


def test_collects_stdout_stderr_and_exit_code() -> None:
    stream = ExecStream(1024)
    frames = [b"\x01hello ", b"\x02oops", b"\x01world", b"", status(3, "exit 3")]
    done = [stream.feed(frame) for frame in frames]
    assert done == [False, False, False, False, True]
    result = stream.result()
    assert (result.stdout, result.stderr, result.exit_code) == (b"hello world", b"oops", 3)


def test_success() -> None:
    assert exit_code_from_status(status(0)[1:]) == 0


def test_failure_without_exit_code_is_an_error() -> None:
    with pytest.raises(ExecFailed, match="container not found"):
        exit_code_from_status(status(None, "container not found")[1:])


def test_output_limit() -> None:
    stream = ExecStream(4)
    with pytest.raises(ExecFailed, match="larger than 4"):
        stream.feed(b"\x01hello")


def test_stream_without_status() -> None:
    stream = ExecStream(10)
    stream.feed(b"\x01x")
    with pytest.raises(ExecFailed, match="without a status"):
        stream.result()


def test_unknown_channel() -> None:
    with pytest.raises(ExecFailed, match="channel 9"):
        ExecStream(10).feed(b"\x09x")
