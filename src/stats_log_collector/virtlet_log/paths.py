"""Where a raw console log goes: the kubelet log file of the VM pod's container. Pure, no I/O.

Virtlet wrote ``<src>/<sandboxId>/<container>_<attempt>.log`` and kubelet (before 1.14) read
``/var/log/pods/<podUID>/<container>_<attempt>.log``: the same relative path, since the sandbox ID is
the pod UID. Today's kubelet reads ``/var/log/pods/<namespace>_<pod>_<podUID>/<container>/<attempt>.log``.
We support both, choosing by which pod directory kubelet has created; we never create it ourselves
unless asked, because a directory kubelet does not know about is never read.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path

# <container>_<attempt>.log, as Virtlet names the raw files; attempt is the restart count.
_SOURCE_NAME = re.compile(r"^(?P<container>.+)_(?P<attempt>\d+)\.log$")


@dataclasses.dataclass(frozen=True)
class Source:
    """A raw console log, identified by its sandbox (pod UID) and file name."""

    sandbox: str
    name: str

    @property
    def container_attempt(self) -> tuple[str, str] | None:
        match = _SOURCE_NAME.match(self.name)
        return (match["container"], match["attempt"]) if match else None


def source_of(root: Path, path: Path) -> Source | None:
    """The source a path under ``root`` denotes: exactly ``<root>/<sandbox>/<name>.log``."""
    try:
        relative = path.relative_to(root)
    except ValueError:
        return None
    if len(relative.parts) != 2 or not relative.name.endswith(".log") or relative.name.startswith("."):
        return None
    return Source(relative.parts[0], relative.name)


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


def output_path(root: Path, source: Source, dirs: PodLogDirs) -> Path | None:
    """Where kubelet reads ``source``'s container log, given the directories in ``root``; None: not yet.

    The legacy layout wins when its directory exists (it is what Virtlet wrote); otherwise a modern
    pod directory is used, which needs a ``<container>_<attempt>.log`` name to place the file.
    """
    if dirs.legacy(source.sandbox):
        return root / source.sandbox / source.name
    pod_dir = dirs.modern(source.sandbox)
    split = source.container_attempt
    if pod_dir is None or split is None:
        return None
    container, attempt = split
    return root / pod_dir / container / f"{attempt}.log"


def created_output_path(root: Path, source: Source) -> Path:
    """With CREATE_POD_LOG_DIRS, where the output goes when kubelet has made no directory: legacy layout."""
    return root / source.sandbox / source.name
