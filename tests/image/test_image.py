"""The image, built from the Dockerfile by ``make image`` and run: every component, as the image's user
(1001:1001) and as OpenShift runs it (restricted-v2: an arbitrary UID of the namespace's range, group 0).

How the image is built and run here is in tests/image/engine.py. Host folders a component writes are
owned by root and writable by the group only, so a run proves the user's group is what lets it write.
"""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubevirt_test_cluster import KubeVirtCluster
from tests.fake_proc import fake_qemu
from tests.helpers import free_port, http, wait_for
from tests.image import engine
from tests.kubelet_logs import read_log_file, rebuild

pytestmark = pytest.mark.image

# The image's own user, and what OpenShift's restricted-v2 SCC picks: a UID from the namespace's range
# (openshift.io/sa.scc.uid-range, e.g. 1000570000/10000) with group 0.
USERS = {"image-user": "1001:1001", "openshift-uid": "1000570000:0"}
MiB = 1 << 20


@pytest.fixture(scope="module")
def image() -> str:
    missing = engine.missing_tools()
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian packages buildah podman mmdebstrap)")
    engine.build_image(engine.base_image())
    return engine.IMAGE


@pytest.fixture(params=list(USERS))
def user(request: pytest.FixtureRequest) -> str:
    return USERS[request.param]


@pytest.fixture
def container(image: str) -> Iterator[str]:
    with engine.working_container(image) as name:
        yield name


def writable_by_group(path: Path, user: str) -> Path:
    """A host folder owned by root:<the user's group>, mode 770: the run writes it through its group."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 0, int(user.split(":")[1]))
    path.chmod(0o770)
    return path


def readable(path: Path) -> Path:
    for item in (path, *path.rglob("*")) if path.is_dir() else (path,):
        item.chmod(0o755 if item.is_dir() else 0o644)
    return path


class Running:
    """A component in the image, started with ``buildah run``; stopped (and reaped) by ``stop``."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for component in started:
        component.stop()


# ---- what is in the image ---------------------------------------------------------------------------


def test_the_image_runs_the_cli_as_1001_and_holds_no_build_or_test_tools(container: str) -> None:
    version = engine.buildah_run(container, ["stats-log-collector", "--version"])
    assert version.returncode == 0 and version.stdout.startswith("stats-log-collector "), version.stderr
    ids = engine.buildah_run(container, ["id"])  # no --user: the Dockerfile's USER
    assert re.match(r"uid=1001\b.* gid=1001\b", ids.stdout), ids.stdout
    for tool in ("gcc", "cc", "c++", "clang", "make", "pytest"):
        assert engine.buildah_run(container, ["sh", "-c", f"command -v {tool}"]).returncode != 0, tool
    for module in ("kubevirt_test_cluster", "pytest", "tests", "mypy"):
        found = engine.buildah_run(container, ["python3", "-c", f"import {module}"])
        assert found.returncode != 0, f"{module} is importable in the image"
    stray = engine.buildah_run(
        container,
        [
            "sh",
            "-c",
            "find / -xdev \\( -path /proc -o -path /sys \\) -prune -o \\( -name 'kubevirt_test_cluster*'"
            " -o -name testcluster -o -name 'stats_log_collector-*.whl' -o -path /wheels -o -path /src \\)"
            " -print",
        ],
        user="0:0",
    )
    assert stray.returncode == 0 and stray.stdout == "", stray.stdout + stray.stderr
    files = engine.buildah_run(container, ["pip", "show", "--files", "stats-log-collector"]).stdout
    assert "stats_log_collector/cli.py" in files and not re.search(r"(^|/)(tests?|conftest)[/.]", files, re.M)
    package = engine.buildah_run(
        container,
        [
            "python3",
            "-c",
            "import stats_log_collector, os; print(os.path.dirname(stats_log_collector.__file__))",
        ],
    ).stdout.strip()
    listing = engine.buildah_run(container, ["find", package, "-name", "test*"])
    assert listing.stdout == ""


def test_data_belongs_to_group_0_and_is_group_writable(container: str) -> None:
    owner = engine.buildah_run(container, ["stat", "-c", "%u:%g %a", "/data"]).stdout.split()
    assert owner[0] == "1001:0" and owner[1][-2] in "67"  # rwx or rw- for the group


def test_the_readme_gives_the_image_size(image: str) -> None:
    size = engine.image_size()
    readme = (engine.ROOT / "README.md").read_text()
    stated = re.search(r"The image is about (\d+) MB", readme)
    assert stated, "README.md: say the image's size"
    assert abs(int(stated.group(1)) * 1_000_000 - size) < 0.15 * size, f"the image is {size / 1e6:.0f} MB"


# ---- each component, as each user ---------------------------------------------------------------------


def test_memstat_procfs_in_the_image_answers_from_the_host(
    user: str, container: str, kubevirt_cluster: KubeVirtCluster, tmp_path: Path, running: list[Running]
) -> None:
    """memstat with the procfs source over a node's /proc (files), naming the VM from the test cluster;
    its CSV in the image's /data, its HTTP answered on the host's 127.0.0.1 (host network)."""
    population = kubevirt_cluster.populate(("vms",), nodes=1, vms_per_namespace=1, log_lines=1)
    [pod] = population.launcher_pods
    [vmi] = population.vmis
    proc = tmp_path / "proc"
    fake_qemu(proc, 4242, f"vms_{vmi.name}", pod.uid, 700 * 1024)
    kubeconfig = kubevirt_cluster.write_kubeconfig(tmp_path / "kube" / "config")
    port = free_port()
    env = {
        "MEMSTAT_SOURCE": "procfs",
        "PROC_ROOT": "/host/proc",
        "NODE_NAME": pod.node,
        "NAMESPACE": "vms",
        "KUBECONFIG": "/kube/config",
        "HTTP_PORT": str(port),
        "POLL_INTERVAL_SECS": "1",
    }
    mounts = {readable(proc): "/host/proc:ro", readable(kubeconfig.parent): "/kube:ro"}
    args = engine.buildah_run_args(
        container, ["stats-log-collector", "memstat"], user=user, env=env, mounts=mounts
    )
    memstat = Running(args, tmp_path / "memstat.stderr")
    running.append(memstat)
    wait_for(lambda: http(port, "/readyz")[0] == 200 or not memstat.alive(), "memstat ready", 90)
    assert memstat.alive(), memstat.text()
    status, body = http(port, "/metrics")
    assert status == 200
    labels = f'namespace="vms",node="{pod.node}",pod="{pod.name}",process="qemu-kvm",vm="{vmi.name}"'
    [value] = re.findall(rf"^memstat_rss_bytes\{{{re.escape(labels)}\}} (\S+)$", body.decode(), re.M)
    assert float(value) == 700 * MiB
    status, csv = http(port, "/mem-stats.csv")
    assert status == 200 and vmi.name in csv.decode()
    memstat.stop()
    written = engine.buildah_run(container, ["cat", "/data/mem-stats.csv"], user=user)
    assert written.returncode == 0 and vmi.name in written.stdout  # written as this user, in /data


def test_virtlet_log_in_the_image_rewrites_a_console(
    user: str, container: str, tmp_path: Path, running: list[Running]
) -> None:
    uid = "0a1b2c3d-0000-1111-2222-333344445555"
    vms = tmp_path / "vms"
    (vms / uid).mkdir(parents=True)
    (vms / uid / "vm_0.log").write_bytes(b"Booting\r\nlogin: \r\n")
    pods = writable_by_group(tmp_path / "pods", user)
    writable_by_group(pods / uid, user)
    state = writable_by_group(tmp_path / "state", user)
    env = {
        "VIRTLET_VM_LOG_LOCATION": "/vms",
        "KUBERNETES_POD_LOGS": "/pods",
        "STATE_DIR": "/state",
        "LOG_FORMAT": "cri",
        "SLEEP_SECONDS": "1",
    }
    mounts = {readable(vms): "/vms:ro", pods: "/pods", state: "/state"}
    args = engine.buildah_run_args(
        container, ["stats-log-collector", "virtlet-log"], user=user, env=env, mounts=mounts
    )
    logger = Running(args, tmp_path / "virtlet-log.stderr")
    running.append(logger)
    output = pods / uid / "vm_0.log"

    def console() -> bytes:
        return rebuild(read_log_file(output)) if output.exists() and output.stat().st_size else b""

    wait_for(lambda: console() == b"Booting\nlogin: \n" or not logger.alive(), "the console rewritten", 60)
    assert console() == b"Booting\nlogin: \n", logger.text()
    assert any(state.iterdir()), "no checkpoint in STATE_DIR"


def test_console_tail_in_the_image_prints_the_console(
    user: str, container: str, tmp_path: Path, running: list[Running]
) -> None:
    consoles = tmp_path / "consoles"
    consoles.mkdir()
    (consoles / "vm.log").write_bytes(b"guest says hello\n")
    args = engine.buildah_run_args(
        container,
        ["stats-log-collector", "console-tail", "--file", "/consoles/vm.log"],
        user=user,
        mounts={readable(consoles): "/consoles:ro"},
    )
    tail = Running(args, tmp_path / "console-tail.stderr")
    running.append(tail)
    assert tail.process.stdout is not None
    os.set_blocking(tail.process.stdout.fileno(), False)
    seen = bytearray()

    def printed() -> bool:
        assert tail.process.stdout is not None
        seen.extend(tail.process.stdout.read() or b"")
        return b"guest says hello\n" in seen or not tail.alive()

    wait_for(printed, "the console on stdout", 60)
    assert b"guest says hello\n" in seen, tail.text()


def test_logs_collector_once_in_the_image(
    user: str, container: str, kubevirt_cluster: KubeVirtCluster, tmp_path: Path
) -> None:
    population = kubevirt_cluster.populate(("vms",), nodes=1, vms_per_namespace=1, log_lines=3)
    [vmi] = population.vmis
    kubeconfig = kubevirt_cluster.write_kubeconfig(tmp_path / "kube" / "config")
    out = writable_by_group(tmp_path / "out", user)
    started = time.monotonic()
    result = engine.buildah_run(
        container,
        ["stats-log-collector", "logs-collector", "--once"],
        user=user,
        env={"KUBECONFIG": "/kube/config", "NAMESPACE": "vms", "DATA_DIR": "/out"},
        mounts={readable(kubeconfig.parent): "/kube:ro", out: "/out"},
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 120
    files = list((out / vmi.name).glob("*.log.gz"))
    assert files, f"nothing collected for {vmi.name}: {sorted(p.name for p in out.rglob('*'))}"
    text = b"".join(gzip.decompress(path.read_bytes()) for path in files)
    assert text.count(b"\n") >= 3
