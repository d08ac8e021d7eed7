"""The image as the tests build and run it: Debian's buildah, podman and mmdebstrap, no registry.

The base: ``mmdebstrap`` makes a Debian bookworm root with Debian's python3 and pip (cached under
~/.cache/stats-log-collector: about half a minute the first time), ``podman import`` turns it into a local
image, and three changes make it stand in for ``python:3.11-slim-bookworm``: no EXTERNALLY-MANAGED marker
(PEP 668; the official Python images have none, so the Dockerfile's ``pip install`` is allowed), and this
machine's CA bundle and pip configuration (with the local files it names), so ``pip`` inside the build
reaches the package index the way pip on this machine does. Those go into the base only: the Dockerfile
and the Makefile stay what a user runs.

The image: ``make image CONTAINER_ENGINE=buildah`` with ``BUILDAH_ISOLATION=chroot`` (buildah's default
isolation needs cgroup delegation this machine does not give). A component runs in a working container
made from the image with ``buildah run --isolation chroot``: host network (a server in it answers on
127.0.0.1), mounted folders, a chosen UID:GID. ``podman run`` is not used: crun cannot set rlimits here.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).parents[2]
CACHE = Path.home() / ".cache" / "stats-log-collector"
TOOLS = ("buildah", "podman", "mmdebstrap")
PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates")
MMDEBSTRAP = ("mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(PACKAGES)}", "bookworm")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PIP_CONF = Path("/etc/pip.conf")
BASE_REPOSITORY = "localhost/stats-log-collector-test-base"
IMAGE = "localhost/stats-log-collector:test"
ISOLATION = {"BUILDAH_ISOLATION": "chroot"}


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def run(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{' '.join(args)}: {result.stderr[-3000:]}"
    return result.stdout


def host_files() -> list[Path]:
    """The CA bundle, pip.conf and every local file or folder pip.conf names (cert, constraint, ...)."""
    files = [CA_BUNDLE] if CA_BUNDLE.exists() else []
    if PIP_CONF.exists():
        files.append(PIP_CONF)
        parser = configparser.ConfigParser()
        parser.read(PIP_CONF)
        for section in parser.sections():
            for value in parser[section].values():
                for word in value.split():
                    path = Path(word.removeprefix("file://"))
                    if path.is_absolute() and path.exists() and path not in files:
                        files.append(path)
    return files


def base_tag() -> str:
    """The base image's tag: a digest of its recipe and of the host files put in, so a change remakes it."""
    digest = hashlib.sha256(repr(MMDEBSTRAP).encode())
    for path in host_files():
        digest.update(str(path).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return f"{BASE_REPOSITORY}:{digest.hexdigest()[:16]}"


def base_image() -> str:
    tag = base_tag()
    if subprocess.run(["podman", "image", "exists", tag], capture_output=True).returncode == 0:
        return tag
    recipe = hashlib.sha256(repr(MMDEBSTRAP).encode()).hexdigest()[:16]
    tarball = CACHE / f"python-base-bookworm-{recipe}.tar"
    if not tarball.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_name(f"{tarball.stem}.partial.tar")  # mmdebstrap: the suffix is the format
        run(*MMDEBSTRAP, str(partial), timeout=900)
        partial.rename(tarball)
    imported = run("podman", "import", "--quiet", str(tarball)).strip()
    with working_container(imported) as container:
        removed = buildah_run(container, ["sh", "-c", "rm -f /usr/lib/python3*/EXTERNALLY-MANAGED"])
        assert removed.returncode == 0, removed.stderr
        for path in host_files():
            run("buildah", "copy", "--quiet", container, str(path), str(path))
        run("buildah", "commit", "--quiet", "--rm", container, tag)
    run("podman", "rmi", imported)
    return tag


def image_id(image: str) -> str | None:
    found = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", image], capture_output=True, text=True
    )
    return found.stdout.strip() if found.returncode == 0 else None


def build_image(base: str) -> None:
    """``make image`` as a buildah user runs it; the image the tag named before is removed (no pile-up)."""
    previous = image_id(IMAGE)
    environ = {**os.environ, **ISOLATION}
    result = subprocess.run(
        ["make", "-s", "image", "CONTAINER_ENGINE=buildah", f"PYTHON_IMAGE={base}", f"IMAGE={IMAGE}"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    if previous is not None and previous != image_id(IMAGE):
        subprocess.run(["podman", "rmi", previous], capture_output=True)  # in use by a container: kept


def image_size() -> int:
    return int(run("podman", "image", "inspect", "--format", "{{.Size}}", IMAGE).strip())


@contextmanager
def working_container(image: str = IMAGE) -> Iterator[str]:
    container = run("buildah", "from", "--quiet", "--pull-never", image).strip()
    try:
        yield container
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)


def buildah_run_args(
    container: str,
    command: Sequence[str],
    *,
    user: str | None = None,
    env: dict[str, str] | None = None,
    mounts: dict[Path, str] | None = None,
) -> list[str]:
    """``buildah run`` of ``command`` in ``container``; ``mounts``: host path -> "target[:ro]"."""
    args = ["buildah", "run", "--isolation", "chroot"]
    if user:
        args += ["--user", user]
    for name, value in (env or {}).items():
        args += ["--env", f"{name}={value}"]
    for source, target in (mounts or {}).items():
        args += ["--volume", f"{source}:{target}"]
    return [*args, container, "--", *command]


def buildah_run(
    container: str,
    command: Sequence[str],
    *,
    user: str | None = None,
    env: dict[str, str] | None = None,
    mounts: dict[Path, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to its end; its exit status and output, for the test to judge."""
    args = buildah_run_args(container, command, user=user, env=env, mounts=mounts)
    return subprocess.run(args, capture_output=True, text=True, timeout=300)
