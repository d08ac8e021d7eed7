"""``stats-log-collector virtlet-log`` as a real process on real directories: discovery, layouts, signals.

SLEEP_SECONDS is set to an hour in most tests, so anything that shows up in time came through inotify,
not the periodic rescan.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stats_log_collector.virtlet_log.watcher import ConsoleLogWatcher, WatcherConfig
from tests import helpers
from tests.kubelet_logs import read_log_file, rebuild

UID = "0a1b2c3d-0000-1111-2222-333344445555"
UID2 = "9f8e7d6c-0000-1111-2222-333344445555"


class Logger:
    """The virtlet-log process over a temporary node layout."""

    def __init__(self, root: Path, **env: str) -> None:
        self.vms, self.pods, self.state = root / "vms", root / "pods", root / "state"
        for directory in (self.vms, self.pods):
            directory.mkdir(exist_ok=True)
        self.stderr_path = root / "virtlet-log.stderr"
        self.env = {
            **os.environ,
            "VIRTLET_VM_LOG_LOCATION": str(self.vms),
            "KUBERNETES_POD_LOGS": str(self.pods),
            "STATE_DIR": str(self.state),
            "SLEEP_SECONDS": "3600",
            "LOG_FORMAT": "cri",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Logger:
        with self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stats_log_collector", "virtlet-log"], env=self.env, stderr=stderr
            )
        wait_for(
            lambda: b"forwarding VM console logs" in self.stderr or b"pty" in self.stderr, "logger start"
        )
        return self

    @property
    def stderr(self) -> bytes:
        return self.stderr_path.read_bytes() if self.stderr_path.exists() else b""

    def stop(self, signum: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        code = self.process.wait(timeout=10)
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def logger(tmp_path: Path) -> Iterator[Callable[..., Logger]]:
    started: list[Logger] = []

    def make(**env: str) -> Logger:
        instance = Logger(tmp_path, **env)
        started.append(instance)
        return instance

    yield make
    for instance in started:
        instance.kill()


# An output read while the logger is mid-write ends in a torn line (ValueError): that means "not yet".
wait_for = functools.partial(helpers.wait_for, timeout=10.0, interval=0.01, not_yet=(ValueError,))


def console_text(path: Path) -> bytes:
    return rebuild(read_log_file(path)) if path.exists() and path.stat().st_size else b""


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as file:
        file.write(data)


def test_new_console_in_legacy_layout_via_inotify(logger) -> None:
    node = logger().start()
    (node.pods / UID).mkdir()
    write(node.vms / UID / "vm_0.log", b"\x1b[0mBooting\r\nlogin: \r\n")
    output = node.pods / UID / "vm_0.log"
    wait_for(lambda: console_text(output) == b"\x1b[0mBooting\nlogin: \n", "console in output")
    write(node.vms / UID / "vm_0.log", b"second batch\r\n")
    wait_for(lambda: console_text(output).endswith(b"second batch\n"), "appended line")


def test_modern_layout_waits_for_the_container_directory(logger) -> None:
    node = logger(LOG_FORMAT="json").start()
    pod_dir = node.pods / f"default_virtlet-vm_{UID}"
    pod_dir.mkdir()
    write(node.vms / UID / "compute_2.log", b"hello\n")
    output = pod_dir / "compute" / "2.log"
    time.sleep(0.3)
    assert not output.exists()  # kubelet has not made the container directory: we do not
    (pod_dir / "compute").mkdir()
    wait_for(lambda: console_text(output) == b"hello\n", "output after kubelet made the directory")
    assert read_log_file(output)[0].stream == "stdout"


def test_waits_for_kubelet_pod_directory(logger) -> None:
    node = logger().start()
    write(node.vms / UID / "vm_0.log", b"early line\n")
    time.sleep(0.3)
    assert list(node.pods.iterdir()) == []  # never created by us
    assert b"waiting for kubelet's pod log directory" in node.stderr
    (node.pods / UID).mkdir()
    wait_for(lambda: console_text(node.pods / UID / "vm_0.log") == b"early line\n", "output once dir exists")


def test_create_pod_log_dirs_when_asked(logger) -> None:
    node = logger(CREATE_POD_LOG_DIRS="true").start()
    write(node.vms / UID / "vm_0.log", b"line\n")
    wait_for(lambda: console_text(node.pods / UID / "vm_0.log") == b"line\n", "created directory and output")


def test_files_present_at_start_and_checkpoints_across_restart(logger) -> None:
    node = logger()
    (node.pods / UID).mkdir()
    write(node.vms / UID / "vm_0.log", b"one\ntwo\n")
    node.start()
    output = node.pods / UID / "vm_0.log"
    wait_for(lambda: console_text(output) == b"one\ntwo\n", "existing file forwarded")
    assert node.stop() == 0
    write(node.vms / UID / "vm_0.log", b"three\n")
    node.start()
    wait_for(lambda: console_text(output) == b"one\ntwo\nthree\n", "only the new line after restart")
    time.sleep(0.2)
    assert console_text(output) == b"one\ntwo\nthree\n"


def test_pty_mode_idles_and_stops_cleanly(logger) -> None:
    node = logger(VIRTLET_VM_LOG_LOCATION="pty").start()
    time.sleep(0.3)
    assert node.process is not None and node.process.poll() is None
    assert node.stderr.count(b"consoles are ptys") == 1
    began = time.monotonic()
    assert node.stop(signal.SIGINT) == 0
    assert time.monotonic() - began < 5


def test_sigterm_stops_within_five_seconds_while_busy(logger) -> None:
    node = logger()
    (node.pods / UID).mkdir()
    write(node.vms / UID / "vm_0.log", b"x" * 100 + b"\n" * 200_000)
    node.start()
    began = time.monotonic()
    assert node.stop() == 0
    assert time.monotonic() - began < 5


def test_files_that_are_not_regular_are_skipped_and_others_go_on(logger) -> None:
    node = logger().start()
    (node.pods / UID).mkdir()
    sandbox = node.vms / UID
    sandbox.mkdir()
    os.mkfifo(sandbox / "fifo_0.log")
    (sandbox / "dir_0.log").mkdir()
    (sandbox / "loop_0.log").symlink_to(sandbox / "loop_0.log")
    with socket.socket(socket.AF_UNIX) as sock, tempfile.TemporaryDirectory(dir="/tmp") as short:
        sock.bind(f"{short}/s")  # AF_UNIX paths are short; the socket file can then be moved
        os.rename(f"{short}/s", sandbox / "sock_0.log")
        write(sandbox / "vm_0.log", b"real console\n")
        wait_for(
            lambda: console_text(node.pods / UID / "vm_0.log") == b"real console\n", "regular file forwarded"
        )
        assert node.process is not None and node.process.poll() is None
    for name in ("fifo_0.log", "loop_0.log", "sock_0.log"):
        assert not (node.pods / UID / name).exists()


def test_deleted_source_is_finished_and_forgotten(logger) -> None:
    node = logger().start()
    (node.pods / UID).mkdir()
    source = node.vms / UID / "vm_0.log"
    write(source, b"last words\n")
    output = node.pods / UID / "vm_0.log"
    wait_for(lambda: console_text(output) == b"last words\n", "forwarded")
    source.unlink()
    wait_for(lambda: not any(node.state.glob("*.json")), "checkpoint forgotten")
    assert console_text(output) == b"last words\n"


def test_metrics_endpoint(logger) -> None:
    port = helpers.free_port()
    node = logger(METRICS_PORT=str(port)).start()
    (node.pods / UID).mkdir()
    write(node.vms / UID / "vm_0.log", b"a\nb\nc\n")
    wait_for(lambda: console_text(node.pods / UID / "vm_0.log") == b"a\nb\nc\n", "forwarded")
    status, body = helpers.http(port, "/metrics")
    assert status == 200
    text = body.decode()
    assert "virtlet_log_lines_total 3.0" in text
    assert "virtlet_log_files 1.0" in text
    assert "virtlet_log_read_bytes_total 6.0" in text


def start_with_tiny_inotify_queue(logger: Callable[..., Logger]) -> Logger:
    knob = Path("/proc/sys/fs/inotify/max_queued_events")
    try:
        original = knob.read_text()
        knob.write_text("8")
    except OSError as exc:
        pytest.skip(f"cannot lower max_queued_events here: {exc}")
    try:
        return logger().start()
    finally:
        knob.write_text(original)  # read at inotify_init: the logger keeps its small queue


def test_inotify_queue_overflow_is_recovered_by_a_rescan(logger) -> None:
    """With a tiny inotify queue, a burst of new files overflows it; the rescan must still find them all."""
    node = start_with_tiny_inotify_queue(logger)
    for uid in (UID, UID2):
        (node.pods / uid).mkdir()
        write(node.vms / uid / "first_0.log", b"first\n")
        first = node.pods / uid / "first_0.log"
        wait_for(lambda: console_text(first) == b"first\n", "sandbox watched")  # noqa: B023
    assert node.process is not None
    node.process.send_signal(signal.SIGSTOP)  # let events pile up while the logger cannot read them
    try:
        for index in range(50):
            write(node.vms / random.choice((UID, UID2)) / f"vm{index}_0.log", f"console {index}\n".encode())
    finally:
        node.process.send_signal(signal.SIGCONT)
    wait_for(lambda: b"inotify queue overflowed" in node.stderr, "overflow noticed")
    wait_for(lambda: len(list(node.pods.glob("*/vm*.log"))) == 50, "all 50 consoles")
    for output in node.pods.glob("*/vm*.log"):
        number = output.name.split("_")[0][2:]
        assert console_text(output) == f"console {number}\n".encode()


def test_kill_9_under_a_steady_writer_loses_and_repeats_nothing(logger) -> None:
    node = logger()
    (node.pods / UID).mkdir()
    source, output = node.vms / UID / "vm_0.log", node.pods / UID / "vm_0.log"
    source.parent.mkdir()
    expected = bytearray()
    rng = random.Random(7)
    node.start()
    for round_ in range(8):
        for number in range(300):
            line = f"round {round_} line {number} " + "x" * rng.randrange(0, 300)
            data = line.encode() + (b"\r\n" if number % 2 else b"\n")
            write(source, data)
            expected += data.replace(b"\r\n", b"\n")
            if number == rng.randrange(300):
                time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.05))
        node.kill()  # SIGKILL, mid-stream
        node.start()
    try:
        wait_for(lambda: console_text(output) == bytes(expected), "exact output after 8 kill -9", timeout=30)
    except AssertionError:
        actual = console_text(output)
        at = next((i for i, (a, b) in enumerate(zip(actual, expected, strict=False)) if a != b), None)
        at = min(len(actual), len(expected)) if at is None else at
        raise AssertionError(
            f"output differs at byte {at} (output {len(actual)}, input {len(expected)} bytes): "
            f"{actual[at - 80 : at + 80]!r} vs {bytes(expected[at - 80 : at + 80])!r}\n"
            f"{node.stderr[-3000:]!r}"
        ) from None


def test_pod_directory_deleted_stops_following(logger) -> None:
    node = logger().start()
    (node.pods / UID).mkdir()
    write(node.vms / UID / "vm_0.log", b"line\n")
    wait_for(lambda: console_text(node.pods / UID / "vm_0.log") == b"line\n", "forwarded")
    shutil.rmtree(node.pods / UID)
    wait_for(lambda: b"stopped following" in node.stderr, "tailer stopped when the pod directory went")
    write(node.vms / UID / "vm_0.log", b"after the pod is gone\n")
    time.sleep(0.3)
    assert not (node.pods / UID).exists()  # never recreated


def test_rescan_alone_finds_new_and_changed_files(tmp_path: Path) -> None:
    """Without reading one inotify event, rescans find new files and appended lines."""
    node = Logger(tmp_path)
    node.state.mkdir()
    watcher = ConsoleLogWatcher(WatcherConfig(node.vms, node.pods, tmp_path / "state", "cri"))
    try:
        (node.pods / UID).mkdir()
        (node.pods / UID2).mkdir()
        write(node.vms / UID / "vm_0.log", b"one\n")
        write(node.vms / UID2 / "vm_0.log", b"idle\n")
        watcher.rescan()
        assert console_text(node.pods / UID / "vm_0.log") == b"one\n"
        write(node.vms / UID / "vm_0.log", b"two\n")
        watcher.rescan()
        assert console_text(node.pods / UID / "vm_0.log") == b"one\ntwo\n"
        assert console_text(node.pods / UID2 / "vm_0.log") == b"idle\n"
        assert watcher.files == 2 and watcher.stats.lines == 3
    finally:
        watcher.close()


def test_sandbox_directory_deleted_forgets_the_source(logger) -> None:
    node = logger().start()
    (node.pods / UID).mkdir()
    write(node.vms / UID / "vm_0.log", b"bye\n")
    wait_for(lambda: console_text(node.pods / UID / "vm_0.log") == b"bye\n", "forwarded")
    shutil.rmtree(node.vms / UID)
    wait_for(lambda: not any(node.state.glob("*.json")), "checkpoint forgotten with the sandbox")
    assert b"stopped following" in node.stderr


def test_rotation_during_an_inotify_overflow_is_not_missed(logger) -> None:
    """fluent-bit#1108: rotations hidden by a queue overflow were missed. Rotate while events are lost."""
    node = start_with_tiny_inotify_queue(logger)
    (node.pods / UID).mkdir()
    source, output = node.vms / UID / "vm_0.log", node.pods / UID / "vm_0.log"
    write(source, b"before\n")
    wait_for(lambda: console_text(output) == b"before\n", "first line")
    assert node.process is not None
    node.process.send_signal(signal.SIGSTOP)
    try:
        write(source, b"old file tail\n")
        source.rename(source.with_name("vm_0.log.1"))
        for number in range(30):  # enough events to overflow a queue of 8
            write(source, f"new file {number}\n".encode())
            write(node.vms / UID / f"noise{number}_0.log", b"x\n")
    finally:
        node.process.send_signal(signal.SIGCONT)
    expected = b"before\nold file tail\n" + b"".join(f"new file {n}\n".encode() for n in range(30))
    wait_for(lambda: console_text(output) == expected, "old tail then the whole new file")
    wait_for(lambda: b"inotify queue overflowed" in node.stderr, "overflow noticed")


@pytest.mark.parametrize("both", [False, True], ids=["old name only", "both names, equal"])
def test_the_original_variable_name_vm_logs_works(logger, both: bool) -> None:
    """Virtlet's own virtlet-log read the folder as VIRTLET_VM_LOGS (Mirantis/virtlet v0.8.2,
    cmd/virtlet_log/virtlet_log.go: main): a manifest written for it keeps working."""
    node = logger()
    node.env["VIRTLET_VM_LOGS"] = node.env["VIRTLET_VM_LOG_LOCATION"]
    if not both:
        del node.env["VIRTLET_VM_LOG_LOCATION"]
    node.start()
    (node.pods / UID).mkdir()
    write(node.vms / UID / "vm_0.log", b"found by the old name\n")
    wait_for(lambda: console_text(node.pods / UID / "vm_0.log") == b"found by the old name\n", "forwarded")


def test_both_names_set_differently_is_a_configuration_error(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "VIRTLET_VM_LOG_LOCATION": str(tmp_path / "vms"),
        "VIRTLET_VM_LOGS": str(tmp_path / "other"),
        "STATE_DIR": str(tmp_path / "state"),
    }
    command = [sys.executable, "-m", "stats_log_collector", "virtlet-log"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "VIRTLET_VM_LOG_LOCATION and VIRTLET_VM_LOGS" in result.stderr
    result = subprocess.run(
        [*command, "--help"], env={**env, "COLUMNS": "400"}, capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "env VIRTLET_VM_LOG_LOCATION or VIRTLET_VM_LOGS" in result.stdout


# --- kubelet's three layouts -----------------------------------------------------------------------------
# kubelet makes the pod directory before the sandbox and, from 1.10, the container directory before the
# container (kubernetes pkg/kubelet/kuberuntime: createPodSandbox, generateContainerConfig); paths.py reads
# the layout from them. Each case: the directories kubelet makes for pod UID, container vm, and where the
# console of attempt N must then be.
LAYOUTS = {
    "kubelet<1.10": ((UID,), "{uid}/vm_{n}.log"),
    "kubelet1.10-1.13": ((UID, f"{UID}/vm"), "{uid}/vm/{n}.log"),
    "kubelet>=1.14": (
        (f"default_virtlet-vm_{UID}", f"default_virtlet-vm_{UID}/vm"),
        "default_virtlet-vm_{uid}/vm/{n}.log",
    ),
}


def kubelet_makes(pods: Path, directories: tuple[str, ...], staging: Path) -> None:
    """kubelet's directories appear at once (as they do for a watcher that looks after its MkdirAll)."""
    staging.mkdir()
    for directory in directories:
        (staging / directory).mkdir()
    os.rename(staging / directories[0], pods / directories[0])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_with_kubelets_directories_first(logger, layout: str) -> None:
    directories, output = LAYOUTS[layout]
    node = logger().start()
    for directory in directories:
        (node.pods / directory).mkdir()
    for attempt in (0, 1):  # a restarted VM container: the next attempt's file
        write(node.vms / UID / f"vm_{attempt}.log", f"attempt {attempt}\r\n".encode())
        target = node.pods / output.format(uid=UID, n=attempt)
        wait_for(lambda: console_text(target) == f"attempt {attempt}\n".encode(), f"{layout} {target}")  # noqa: B023
    assert sorted(str(p.relative_to(node.pods)) for p in node.pods.rglob("*.log")) == [
        output.format(uid=UID, n=0),
        output.format(uid=UID, n=1),
    ]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_when_the_pod_directory_appears_after_the_console(
    logger, tmp_path: Path, layout: str
) -> None:
    directories, output = LAYOUTS[layout]
    node = logger().start()
    write(node.vms / UID / "vm_0.log", b"before kubelet\n")
    wait_for(lambda: b"waiting for kubelet's pod log directory" in node.stderr, "waiting")
    kubelet_makes(node.pods, directories, tmp_path / "staging")
    target = node.pods / output.format(uid=UID, n=0)
    wait_for(lambda: console_text(target) == b"before kubelet\n", f"{layout} after the pod directory")
    assert [str(p.relative_to(node.pods)) for p in node.pods.rglob("*.log")] == [output.format(uid=UID, n=0)]


def test_kubelet_1_10_container_directory_made_later(logger) -> None:
    """kubelet 1.10-1.13 has made another container's directory in the pod's: ours is coming, wait for it."""
    node = logger().start()
    (node.pods / UID / "sidecar").mkdir(parents=True)
    write(node.vms / UID / "vm_0.log", b"waited for vm/\n")
    wait_for(lambda: b"waiting for kubelet's pod log directory" in node.stderr, "waiting")
    time.sleep(0.3)
    assert list(node.pods.rglob("*.log")) == []  # not flat: kubelet 1.10-1.13 reads <uid>/vm/0.log
    (node.pods / UID / "vm").mkdir()
    target = node.pods / UID / "vm" / "0.log"
    wait_for(lambda: console_text(target) == b"waited for vm/\n", "output once kubelet made vm/")


def test_create_pod_log_dirs_makes_the_container_directory_kubelet_wants(logger) -> None:
    node = logger(CREATE_POD_LOG_DIRS="true").start()
    (node.pods / UID / "sidecar").mkdir(parents=True)  # kubelet 1.10-1.13's pod directory
    (node.pods / f"default_virtlet-vm_{UID2}").mkdir()  # kubelet 1.14+'s
    write(node.vms / UID / "vm_0.log", b"one\n")
    write(node.vms / UID2 / "vm_0.log", b"two\n")
    wait_for(lambda: console_text(node.pods / UID / "vm" / "0.log") == b"one\n", "created <uid>/vm/")
    modern = node.pods / f"default_virtlet-vm_{UID2}" / "vm" / "0.log"
    wait_for(lambda: console_text(modern) == b"two\n", "created <ns>_<pod>_<uid>/vm/")
    assert not (node.pods / UID2).exists()  # never a directory kubelet does not read


@pytest.mark.parametrize("symlinked", ["pod directory", "container directory"])
def test_symlinked_kubelet_directories_are_never_followed(logger, tmp_path: Path, symlinked: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    node = logger(CREATE_POD_LOG_DIRS="true").start()
    if symlinked == "pod directory":
        (node.pods / UID).symlink_to(elsewhere)
    else:
        (node.pods / UID).mkdir()
        (node.pods / UID / "vm").symlink_to(elsewhere)
    write(node.vms / UID / "vm_0.log", b"must not leave the pod log root\n")
    (node.pods / UID2).mkdir()
    write(node.vms / UID2 / "vm_0.log", b"others go on\n")
    wait_for(lambda: console_text(node.pods / UID2 / "vm_0.log") == b"others go on\n", "other console")
    time.sleep(0.3)
    assert list(elsewhere.iterdir()) == []
    assert list(node.pods.rglob("*.log")) == [node.pods / UID2 / "vm_0.log"]
    assert node.process is not None and node.process.poll() is None
    assert node.stderr.count(b"refusing pod log directory") == 1


def test_a_pod_log_directory_that_cannot_be_made_fails_that_console_only(logger, tmp_path: Path) -> None:
    node = logger(CREATE_POD_LOG_DIRS="true").start()
    (node.pods / f"default_virtlet-vm_{UID}").mkdir()
    (node.pods / f"default_virtlet-vm_{UID}" / "vm").write_bytes(b"")  # a file where vm/ must go
    (node.pods / f"default_virtlet-vm_{UID2}").mkdir()
    write(node.vms / UID / "vm_0.log", b"nowhere to go\n")
    write(node.vms / UID2 / "vm_0.log", b"made and written\n")
    made = node.pods / f"default_virtlet-vm_{UID2}" / "vm" / "0.log"
    wait_for(lambda: console_text(made) == b"made and written\n", "the other console")
    wait_for(lambda: b"refusing pod log directory" in node.stderr, "the refusal logged")
    assert node.process is not None and node.process.poll() is None
