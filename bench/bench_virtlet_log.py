"""virtlet-log side by side with rsyslog imfile and ``tail -c +1``, in one run.

    .venv/bin/python bench/bench_virtlet_log.py [--lines 1000000] [--runs 3] [--files 1000]

Throughput: each contender copies the same file of ~100-byte lines (page cache) into the format kubelet
reads; we measure wall time until the last line is out and the CPU seconds of the contender's process.
rsyslog is the one log agent installable here; it is installed with apt-get when missing.
Latency: with ``--files`` consoles followed, 200 appends 20 ms apart to random files, timed from the write
to the line being in the output (seen by inotify on the output directories); and new-file pickup: a new
console's first line to its output. Machines differ and are noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inotify_simple import INotify, flags

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "stats_log_collector", "virtlet-log"]
UID = "0a1b2c3d-0000-1111-2222-333344445555"
CLK_TCK = os.sysconf("SC_CLK_TCK")

RSYSLOG_TEMPLATES = {
    # Same output as ours: time of reading, stream, tag, the line; and the docker json-file line.
    "cri": 'template(name="out" type="string" string="%timegenerated:::date-rfc3339% stdout F %msg%\\n")',
    "json": 'template(name="out" type="string" '
    'string="{\\"log\\":\\"%msg:::json%\\\\n\\",\\"stream\\":\\"stdout\\",\\"time\\":\\"%timegenerated:::date-rfc3339%\\"}\\n")',
}


@dataclass
class Result:
    name: str
    wall: float
    cpu: float


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))


def wait_lines(path: Path, lines: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    size_seen = -1
    while True:
        size = path.stat().st_size if path.exists() else 0
        if size != size_seen:
            size_seen = size
            if count_lines(path) >= lines:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: fewer than {lines} lines after {timeout} s")
        time.sleep(0.02)


def make_input(path: Path, lines: int) -> None:
    rng = random.Random(1)
    words = [f"word{n}" for n in range(200)]
    with path.open("wb") as file:
        for number in range(lines):
            line = f"[{number:9d}] " + " ".join(rng.choices(words, k=12))
            file.write(line[:98].encode() + b"\n")


def run_tail(source: Path, work: Path) -> Result:
    began = time.monotonic()
    with (work / "tail.out").open("wb") as sink:
        process = subprocess.Popen(["tail", "-c", "+1", str(source)], stdout=sink)
        _, _, usage = os.wait4(process.pid, 0)
        process.returncode = 0
    return Result("tail -c +1 (the limit)", time.monotonic() - began, usage.ru_utime + usage.ru_stime)


def run_rsyslog(source: Path, work: Path, fmt: str, lines: int) -> Result:
    out = work / f"rsyslog-{fmt}.out"
    conf = work / f"rsyslog-{fmt}.conf"
    state = work / f"rsyslog-{fmt}-state"
    shutil.rmtree(state, ignore_errors=True)  # a fresh start each run: no remembered position, no output
    out.unlink(missing_ok=True)
    state.mkdir()
    conf.write_text(
        f'global(workDirectory="{state}" maxMessageSize="64k")\n'
        'module(load="imfile" mode="inotify")\n'
        f"{RSYSLOG_TEMPLATES[fmt]}\n"
        f'input(type="imfile" File="{source}" Tag="vm" ruleset="copy" freshStartTail="off")\n'
        f'ruleset(name="copy") {{ action(type="omfile" file="{out}" template="out") }}\n'
    )
    began = time.monotonic()
    process = subprocess.Popen(
        ["rsyslogd", "-n", "-f", str(conf), "-i", str(work / f"rsyslog-{fmt}.pid")],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_lines(out, lines)
        wall = time.monotonic() - began
        cpu = cpu_seconds(process.pid)
    finally:
        process.terminate()
        process.wait()
    return Result(f"rsyslog imfile, {fmt}", wall, cpu)


def node_dirs(work: Path, name: str) -> tuple[Path, Path, Path]:
    base = work / name
    if base.exists():
        shutil.rmtree(base)
    vms, pods, state = base / "vms", base / "pods", base / "state"
    for directory in (vms, pods, state):
        directory.mkdir(parents=True)
    return vms, pods, state


def start_logger(vms: Path, pods: Path, state: Path, fmt: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "VIRTLET_VM_LOG_LOCATION": str(vms),
        "KUBERNETES_POD_LOGS": str(pods),
        "STATE_DIR": str(state),
        "LOG_FORMAT": fmt,
        "LOG_LEVEL": "warning",
    }
    return subprocess.Popen(CLI, env=env)


def run_virtlet_log(source: Path, work: Path, fmt: str, lines: int) -> Result:
    vms, pods, state = node_dirs(work, f"ours-{fmt}")
    (pods / UID).mkdir()
    (vms / UID).mkdir()
    target = vms / UID / "vm_0.log"
    os.link(source, target) if source.stat().st_dev == target.parent.stat().st_dev else shutil.copy(
        source, target
    )
    began = time.monotonic()
    process = start_logger(vms, pods, state, fmt)
    try:
        wait_lines(pods / UID / "vm_0.log", lines)
        wall = time.monotonic() - began
        cpu = cpu_seconds(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait()
    return Result(f"virtlet-log, {fmt}", wall, cpu)


def throughput(work: Path, lines: int, runs: int) -> None:
    source = work / "input.log"
    make_input(source, lines)
    size = source.stat().st_size
    print(f"\nthroughput: {lines:,} lines, {size / 1e6:.1f} MB, median of {runs} runs")
    contenders: list[Callable[[], Result]] = [lambda: run_tail(source, work)]
    if shutil.which("rsyslogd"):
        contenders += [lambda fmt=fmt: run_rsyslog(source, work, fmt, lines) for fmt in ("cri", "json")]
    contenders += [lambda fmt=fmt: run_virtlet_log(source, work, fmt, lines) for fmt in ("cri", "json")]
    results: dict[str, list[Result]] = {}
    for _ in range(runs):
        for contender in contenders:
            result = contender()
            results.setdefault(result.name, []).append(result)
    medians = {
        name: Result(name, statistics.median(r.wall for r in rs), statistics.median(r.cpu for r in rs))
        for name, rs in results.items()
    }
    print(f"{'contender':28} {'wall s':>8} {'CPU s':>8} {'CPU vs rsyslog same format':>28}")
    for name, result in medians.items():
        fmt = name.rsplit(", ", 1)[-1]
        reference = medians.get(f"rsyslog imfile, {fmt}")
        ratio = f"{result.cpu / reference.cpu:.2f}" if reference and name.startswith("virtlet") else ""
        print(f"{name:28} {result.wall:8.2f} {result.cpu:8.2f} {ratio:>28}")


def latency(work: Path, files: int, appends: int = 200) -> None:
    vms, pods, state = node_dirs(work, "latency")
    sandboxes = [f"{n:08x}-0000-1111-2222-333344445555" for n in range(files)]
    for uid in sandboxes:
        (pods / uid).mkdir()
        (vms / uid).mkdir()
        (vms / uid / "vm_0.log").write_bytes(b"boot\n")
    process = start_logger(vms, pods, state, "cri")
    watcher = INotify()
    try:
        wait_for_outputs(pods, sandboxes)
        by_wd = {watcher.add_watch(pods / uid, flags.MODIFY): uid for uid in sandboxes}
        rng = random.Random(2)
        delays = []
        for number in range(appends):
            uid = rng.choice(sandboxes)
            with (vms / uid / "vm_0.log").open("ab") as file:
                began = time.perf_counter()
                file.write(f"line {number}\n".encode())
            delays.append(wait_event(watcher, by_wd, uid) - began)
            time.sleep(0.02)
        idle_cpu = measure_idle_cpu(process.pid, seconds=21.0)  # two rescans (SLEEP_SECONDS=10)
        rss = int(Path(f"/proc/{process.pid}/status").read_text().split("VmRSS:")[1].split()[0]) // 1024
        pickups = new_file_pickup(vms, pods, watcher)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait()
        watcher.close()
    delays_ms = sorted(d * 1000 for d in delays)
    print(
        f"\nlatency with {files} consoles followed, {appends} appends 20 ms apart"
        " (tail -F here: p50 0.44 / p99 0.91 ms)"
    )
    print(
        f"  append to output: p50 {percentile(delays_ms, 50):.2f} ms, p99 {percentile(delays_ms, 99):.2f} ms"
    )
    print(
        f"  new console's first line to output: p50 {percentile(pickups, 50):.1f} ms,"
        f" max {max(pickups):.1f} ms"
    )
    print(f"  idle: {idle_cpu * 100:.2f}% of a core, RSS {rss} MiB")


def wait_for_outputs(pods: Path, sandboxes: list[str]) -> None:
    deadline = time.monotonic() + 120
    while any(not (pods / uid / "vm_0.log").exists() for uid in sandboxes):
        if time.monotonic() > deadline:
            raise TimeoutError("the logger did not pick up every console")
        time.sleep(0.05)


def wait_event(watcher: INotify, by_wd: dict[int, str], uid: str) -> float:
    while True:
        for event in watcher.read(timeout=5000):
            if by_wd.get(event.wd) == uid:
                return time.perf_counter()


def measure_idle_cpu(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def new_file_pickup(vms: Path, pods: Path, watcher: INotify, count: int = 20) -> list[float]:
    results = []
    for number in range(count):
        uid = f"ffff{number:04x}-0000-1111-2222-333344445555"
        (pods / uid).mkdir()
        wd = watcher.add_watch(pods / uid, flags.CREATE | flags.MODIFY)
        (vms / uid).mkdir()
        began = time.perf_counter()
        (vms / uid / "vm_0.log").write_bytes(b"hello\n")
        results.append((wait_event(watcher, {wd: uid}, uid) - began) * 1000)
    return sorted(results)


def percentile(sorted_values: list[float], pct: float) -> float:
    index = min(len(sorted_values) - 1, round(pct / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]


def ensure_rsyslog() -> None:
    if shutil.which("rsyslogd") or os.geteuid() != 0:
        return
    print("installing rsyslog (apt-get)...", flush=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "rsyslog"],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        check=False,
        stdout=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    ensure_rsyslog()
    with tempfile.TemporaryDirectory(prefix="bench-virtlet-log-") as tmp:
        work = Path(tmp)
        if not args.skip_throughput:
            throughput(work, args.lines, args.runs)
        if not args.skip_latency:
            latency(work, args.files)


if __name__ == "__main__":
    main()
