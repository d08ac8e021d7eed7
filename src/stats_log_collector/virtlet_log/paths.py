"""Where a raw console log goes: the kubelet log file of the VM pod's container. Pure, no I/O.

Virtlet writes ``<src>/<sandboxId>/<container>_<attempt>.log`` (Mirantis/virtlet v0.8.2,
pkg/libvirttools/virtualization.go: ``addSerialDevicesToDomain``), and the sandbox ID is the pod UID.
kubelet reads a container's log in one of three layouts, by version (kubernetes pkg/kubelet/kuberuntime,
helpers.go: ``buildContainerLogsPath``, ``BuildContainerLogsDirectory``, ``BuildPodLogsDirectory``):

========  =============================================================  =================================
kubelet   file                                                           introduced by
========  =============================================================  =================================
< 1.10    ``<dst>/<podUID>/<container>_<attempt>.log``                   (what Virtlet's virtlet-log wrote)
1.10-13   ``<dst>/<podUID>/<container>/<attempt>.log``                   kubernetes#59906 (doc: #62015)
>= 1.14   ``<dst>/<namespace>_<pod>_<podUID>/<container>/<attempt>.log``  kubernetes#74441
========  =============================================================  =================================

The layout is read from the directories kubelet made, never guessed from a version: kubelet makes the pod
directory before it asks the runtime for the sandbox (kuberuntime_sandbox.go: ``createPodSandbox``,
``MkdirAll(LogDirectory)``) and, from 1.10, the container directory before it asks the runtime to create
the container (kuberuntime_container.go: ``generateContainerConfig``,
``MkdirAll(BuildContainerLogsDirectory(...))``), so both exist before the VM, hence its console, does. A
``<podUID>`` directory therefore tells the two older layouts apart by what is in it (``legacy_layout``). We
never create a directory unless asked (CREATE_POD_LOG_DIRS): one kubelet does not know about is never read.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable
from pathlib import Path

# <container>_<attempt>.log, as Virtlet names the raw files; attempt is the restart count.
_SOURCE_NAME = re.compile(r"(?P<container>.+)_(?P<attempt>\d+)\.log")


class Layout(enum.Enum):
    """kubelet's container log layouts, by the kubelet versions that write them."""

    FLAT = "kubelet < 1.10: <podUID>/<container>_<attempt>.log"
    CONTAINER_DIR = "kubelet 1.10-1.13: <podUID>/<container>/<attempt>.log"
    NAMESPACED = "kubelet >= 1.14: <namespace>_<pod>_<podUID>/<container>/<attempt>.log"


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def has_control_character(name: str) -> bool:
    """No kubelet log is named with one (container names are DNS labels); a newline would forge log lines."""
    return _CONTROL_CHARACTER.search(name) is not None


def plain_name(name: str) -> bool:
    """One path component that cannot forge a log line: not ``.`` or ``..``, no ``/``, no control chars."""
    return name not in ("", ".", "..") and "/" not in name and not has_control_character(name)


@dataclasses.dataclass(frozen=True)
class Source:
    """A raw console log, identified by its sandbox (pod UID) and file name."""

    sandbox: str
    name: str

    @property
    def container_attempt(self) -> tuple[str, str] | None:
        match = _SOURCE_NAME.fullmatch(self.name)
        return (match["container"], match["attempt"]) if match else None


def source_of(root: Path, path: Path) -> Source | None:
    """The source a path under ``root`` denotes: exactly ``<root>/<sandbox>/<name>.log``, plain names."""
    try:
        relative = path.relative_to(root)
    except ValueError:
        return None
    if len(relative.parts) != 2 or not relative.name.endswith(".log") or relative.name.startswith("."):
        return None
    sandbox, name = relative.parts
    if not (plain_name(sandbox) and plain_name(name)):
        return None
    return Source(sandbox, name)


@dataclasses.dataclass(frozen=True)
class PodDirListing:
    """What a pod log directory holds: real subdirectories, regular files, and anything else (symlinks...)."""

    directories: frozenset[str] = frozenset()
    files: frozenset[str] = frozenset()
    others: frozenset[str] = frozenset()


class PodLogDirs:
    """The directory names in the pod log root, indexed by pod UID, kept up to date from inotify.

    A node runs hundreds of pods: listing the root for every new console and scanning it for the
    ``_<uid>`` suffix made discovery quadratic, so the names are indexed once and then maintained.
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._legacy: set[str] = set()
        self._modern: dict[str, str] = {}  # pod UID -> <namespace>_<pod>_<uid>
        for name in names:
            self.add(name)

    def add(self, name: str) -> None:
        if not plain_name(name):
            return
        self._legacy.add(name)
        if name.count("_") >= 2:
            self._modern[name.rsplit("_", 1)[1]] = name

    def discard(self, name: str) -> None:
        self._legacy.discard(name)
        if name.count("_") >= 2 and self._modern.get(name.rsplit("_", 1)[1]) == name:
            del self._modern[name.rsplit("_", 1)[1]]

    def legacy(self, sandbox: str) -> bool:
        return sandbox in self._legacy

    def modern(self, sandbox: str) -> str | None:
        return self._modern.get(sandbox)


def pod_dir_of(source: Source, dirs: PodLogDirs) -> str | None:
    """The name of the directory kubelet made for the source's pod; None: none yet.

    ``<podUID>`` (kubelet before 1.14, and what Virtlet wrote into) wins over ``<namespace>_<pod>_<podUID>``.
    """
    if dirs.legacy(source.sandbox):
        return source.sandbox
    return dirs.modern(source.sandbox)


def legacy_layout(source: Source, listing: PodDirListing) -> Layout | None:
    """Which ``<podUID>/`` layout to write ``source`` in, judged by what the directory holds; None: wait.

    * the container's directory is there: kubelet 1.10-1.13 made it (``generateContainerConfig``);
    * the flat file is there: written before (by us or the runtime), go on with it;
    * another container's directory is there: kubelet 1.10-1.13, which has not made ours yet: wait;
    * otherwise, flat: a 1.10-1.13 kubelet would have made the container directory before the console
      existed, so a console beside an empty pod directory is on an older kubelet.

    A name without an attempt number fits only the flat layout; an entry named after the container that is
    not a real directory (a symlink) is never followed: wait.
    """
    split = source.container_attempt
    if split is None:
        return Layout.FLAT
    container, _ = split
    if container in listing.directories:
        return Layout.CONTAINER_DIR
    if container in listing.others:
        return None
    if source.name in listing.files or not listing.directories:
        return Layout.FLAT
    return None


def output_path(root: Path, source: Source, pod_dir: str, listing: PodDirListing) -> Path | None:
    """Where kubelet reads ``source``'s log, in its pod directory ``pod_dir`` holding ``listing``; None: wait.

    ``pod_dir`` is ``pod_dir_of``'s answer; the NAMESPACED layout needs the container's directory, which
    kubelet makes just before it creates the container.
    """
    split = source.container_attempt
    if pod_dir == source.sandbox:
        layout = legacy_layout(source, listing)
    else:
        layout = Layout.NAMESPACED if split is not None and split[0] in listing.directories else None
    if layout is None:
        return None
    if layout is Layout.FLAT or split is None:
        return root / pod_dir / source.name
    container, attempt = split
    return root / pod_dir / container / f"{attempt}.log"


def created_output_path(
    root: Path, source: Source, pod_dir: str | None, listing: PodDirListing = PodDirListing()
) -> Path | None:
    """With CREATE_POD_LOG_DIRS, where the output goes when kubelet's directory is missing or not ready.

    In kubelet's pod directory, the container directory its layout wants (None if something that is not a
    directory has that name: never followed); with no pod directory at all, the flat ``<podUID>/`` layout
    Virtlet's own virtlet-log wrote (Mirantis/virtlet v0.8.2, pkg/log/logger.go: ``SpawnWorkers``).
    """
    split = source.container_attempt
    if pod_dir is None or split is None:
        return root / source.sandbox / source.name
    container, attempt = split
    if container in listing.others:
        return None
    return root / pod_dir / container / f"{attempt}.log"
