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


def modern_pod_dir(sandbox: str, entries: Iterable[str]) -> str | None:
    """Among the names in the pod log root, the ``<namespace>_<pod>_<uid>`` directory of ``sandbox``."""
    suffix = "_" + sandbox
    for entry in entries:
        if entry.endswith(suffix) and entry.count("_") >= 2 and entry != suffix:
            return entry
    return None


def output_path(root: Path, source: Source, entries: Iterable[str]) -> Path | None:
    """Where kubelet reads ``source``'s container log, given the names present in ``root``; None: not yet.

    The legacy layout wins when its directory exists (it is what Virtlet wrote); otherwise a modern
    pod directory is used, which needs a ``<container>_<attempt>.log`` name to place the file.
    """
    names = set(entries)
    if source.sandbox in names:
        return root / source.sandbox / source.name
    pod_dir = modern_pod_dir(source.sandbox, names)
    split = source.container_attempt
    if pod_dir is None or split is None:
        return None
    container, attempt = split
    return root / pod_dir / container / f"{attempt}.log"


def created_output_path(root: Path, source: Source) -> Path:
    """With CREATE_POD_LOG_DIRS, where the output goes when kubelet has made no directory: legacy layout."""
    return root / source.sandbox / source.name
