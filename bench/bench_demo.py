"""How long a newcomer waits after typing ``make demo``: to the first console line, to the first chart point.

    .venv/bin/python bench/bench_demo.py [--repo DIR] [--demo-dir DIR] [--runs 2] [--vms 3]

Runs ``make -C <repo> demo`` as a terminal would (its own process group, stopped with SIGINT as Ctrl-C
does) and watches from the outside, independently of what the demo prints: the first guest line of this
run in any pod log under ``<demo-dir>/pods``, the first point on the dashboard's chart
(``/api/series``), and the same for every VM. Times are from the moment ``make`` is started.

With a fresh ``--demo-dir`` (the default: a new temporary one) the first run fetches the kernel and
builds the initramfs; later runs use the cache. For a cold start, run it in a fresh clone with no
``.venv`` (``--repo``) after ``apt-get purge qemu-system-x86 qemu-system-common qemu-system-data
busybox-static``: then ``make demo`` creates the virtualenv and installs the packages too (as root).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stats_log_collector.demo.guest import demo_guests, parse_guest_line  # noqa: E402
from stats_log_collector.demo.layout import Layout  # noqa: E402

TIMEOUT = 900.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def guest_lines_after(path: Path, offset: int) -> list[str]:
    try:
        with path.open("rb") as file:
            file.seek(offset)
            data = file.read()
    except FileNotFoundError:
        return []
    texts = [line.split(b" ", 3)[-1].decode("utf-8", "replace") for line in data.splitlines()]
    return [text for text in texts if parse_guest_line(text) is not None]


def charted(port: int, since: float) -> set[str]:
    url = f"http://127.0.0.1:{port}/api/series?since=-{int(since) + 1}s&points=100"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            series = json.load(response)["series"]
    except (OSError, ValueError, KeyError):
        return set()
    return {name for name, values in series.items() if any(v is not None for v in values)}


def one_run(repo: Path, demo_dir: Path, vms: int) -> dict[str, float]:
    layout = Layout(demo_dir)
    names = [guest.name for guest in demo_guests(vms)]
    offsets = {vm: layout.pod_log(vm).stat().st_size if layout.pod_log(vm).exists() else 0 for vm in names}
    port = free_port()
    env = {**os.environ, "DEMO_DIR": str(demo_dir), "DEMO_VMS": str(vms), "HTTP_PORT": str(port)}
    log = (demo_dir.parent / f"make-demo-{time.time():.0f}.log").open("wb")
    began = time.monotonic()
    make = subprocess.Popen(
        ["make", "-C", str(repo), "demo"], env=env, stdout=log, stderr=log, start_new_session=True
    )
    first_line: dict[str, float] = {}
    first_point: dict[str, float] = {}
    try:
        while len(first_line) < len(names) or len(first_point) < len(names):
            now = time.monotonic() - began
            if now > TIMEOUT or make.poll() is not None:
                raise SystemExit(f"make demo ended or timed out; see {log.name}")
            for vm in names:
                if vm not in first_line and guest_lines_after(layout.pod_log(vm), offsets[vm]):
                    first_line[vm] = now
            for vm in charted(port, now) & set(names):
                first_point.setdefault(vm, now)
            time.sleep(0.05)
    finally:
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C: make and the demo both get it
        make.wait(timeout=120)
        log.close()
    return {
        "first console line": min(first_line.values()),
        "every VM's first line": max(first_line.values()),
        "first chart point": min(first_point.values()),
        "every VM charted": max(first_point.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", type=Path, default=ROOT)
    parser.add_argument("--demo-dir", type=Path)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--vms", type=int, default=3)
    args = parser.parse_args()
    demo_dir = (args.demo_dir or Path(tempfile.mkdtemp(prefix="bench-demo-")) / "demo").absolute()
    print(f"make -C {args.repo} demo, DEMO_DIR={demo_dir}, DEMO_VMS={args.vms} (seconds from make's start)")
    for run in range(1, args.runs + 1):
        cached = (demo_dir / "images" / "vmlinuz").exists()
        figures = one_run(args.repo.absolute(), demo_dir, args.vms)
        shown = ", ".join(f"{name} {value:.1f}" for name, value in figures.items())
        print(f"run {run} ({'images cached' if cached else 'kernel fetched, initramfs built'}): {shown}")


if __name__ == "__main__":
    main()
