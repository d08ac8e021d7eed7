"""Fixtures for memstat tests that run the real command: the process itself and QEMU-named processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from kubevirt_test_cluster import KubeVirtCluster
from stats_log_collector.kube import KubeClient
from stats_log_collector.kube.retry import RetryPolicy
from stats_log_collector.memstat.inventory import Inventory
from stats_log_collector.settings import KubeSettings
from tests.helpers import free_port

FAST = RetryPolicy(retries=1, base_delay=0.01, max_delay=0.02)


@pytest.fixture
def memstat(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], int]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, **env: str) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        environ = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        environ.update(
            {"DATA_DIR": str(tmp_path / "data"), "HTTP_PORT": str(port), "POLL_INTERVAL_SECS": "1", **env}
        )
        environ["HOME"] = str(tmp_path)  # no ~/.kube/config unless a test gives one
        process = subprocess.Popen(
            [sys.executable, "-m", "stats_log_collector", "memstat", *args],
            env=environ,
            stderr=open(tmp_path / "memstat.stderr", "ab"),  # noqa: SIM115
        )
        started.append(process)
        return process, port

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def fake_vm(tmp_path: Path) -> Iterator[int]:
    """A process named qemu-kvm holding 64 MiB, started as QEMU is: ``-name guest=...``."""
    binary = tmp_path / "qemu-kvm"
    binary.symlink_to(os.path.realpath(sys.executable))
    process = subprocess.Popen(
        [
            str(binary),
            "-c",
            "import sys, time; x = bytearray(64 << 20); print('ready', flush=True); time.sleep(120)",
            "-name",
            "guest=testvm,debug-threads=on",
        ],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    yield process.pid
    process.kill()
    process.wait()


@pytest.fixture
async def client(kubevirt_cluster: KubeVirtCluster) -> AsyncIterator[KubeClient]:
    """A client of the test cluster that gives up quickly (one fast retry)."""
    settings = KubeSettings(kube_api_url=kubevirt_cluster.url, kube_request_timeout_secs=5.0, kube_retries=1)
    kube = await KubeClient.connect(settings, FAST)
    yield kube
    await kube.close()


@pytest.fixture
async def inventory(client: KubeClient) -> AsyncIterator[Callable[..., Awaitable[Inventory]]]:
    """``await inventory(namespaces, **options)``: an Inventory of the test cluster, running and synced."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(namespaces: Sequence[str], **options: Any) -> Inventory:
        found = Inventory(client, namespaces, policy=FAST, sync_timeout=10.0, **options)
        stop = asyncio.Event()
        running.append((stop, asyncio.create_task(found.run(stop))))
        await found.wait_synced()
        return found

    yield start
    for stop, task in running:
        stop.set()
        await task
