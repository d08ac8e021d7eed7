"""The last lines of a VM's guest console, for its page: from what logs-collector wrote under LOGS_DIR.

logs-collector keeps ``<LOGS_DIR>/<vm>/`` (or ``<LOGS_DIR>/<namespace>/<vm>/`` when it watches several
namespaces) with one gzip file per stream and window, ``<pod>.<container>.<YYYYMMDDTHHMMSSZ>.log.gz``
(logs_collector/layout.py); KubeVirt's console sidecar is the ``guest-console-log`` container. The VM's
names come from a URL: they are only compared with the entries of LOGS_DIR, never joined into a path,
and, as in ``/logs/``, symlinks and dot-entries are not followed. The newest window's file is read whole
(gunzipped as a stream, at most MAX_READ bytes) keeping its last lines.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
import stat
import zlib
from collections import deque
from pathlib import Path

CONSOLE = re.compile(r"\.guest-console-log\.(\d{8}T\d{6}Z)\.log\.gz")
LINES = 50
MAX_LINE = 4096  # characters of a line shown; the rest is cut
MAX_READ = 64 << 20  # decompressed bytes read from one file: a gzip bomb costs no more


def _entry(directory: Path, name: str, want_dir: bool) -> Path | None:
    """``directory``'s entry called exactly ``name``, if it is a plain directory (or file): found by
    listing, so ``name`` never becomes part of a path unchecked."""
    if not name or name.startswith("."):
        return None
    try:
        with os.scandir(directory) as scan:
            for entry in scan:
                if entry.name == name:
                    mode = entry.stat(follow_symlinks=False).st_mode
                    return (
                        Path(entry.path) if (stat.S_ISDIR(mode) if want_dir else stat.S_ISREG(mode)) else None
                    )
    except OSError:
        return None
    return None


def vm_folder(logs_dir: Path, namespace: str, vm: str) -> Path | None:
    """The VM's folder: ``<namespace>/<vm>`` first (several namespaces watched), else ``<vm>``."""
    within = _entry(logs_dir, namespace, want_dir=True) if namespace else None
    return (_entry(within, vm, want_dir=True) if within else None) or _entry(logs_dir, vm, want_dir=True)


def newest_console_file(folder: Path) -> Path | None:
    """The console file of the latest window (any pod: the VM may have migrated)."""
    newest: tuple[str, str] | None = None
    try:
        with os.scandir(folder) as scan:
            for entry in scan:
                match = CONSOLE.search(entry.name)
                if match is None or not entry.name.endswith(".log.gz") or entry.name.startswith("."):
                    continue
                if stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                    newest = max(newest or (match[1], entry.name), (match[1], entry.name))
    except OSError:
        return None
    return None if newest is None else folder / newest[1]


def last_lines(path: Path, count: int = LINES) -> list[str]:
    """The last ``count`` lines of a gzip file (an unreadable or cut one: what could be read).

    A VM's page asks every few seconds while the file changes once per collection window: the lines are
    kept per file version (size and modification time), so an unchanged file is not decompressed again.
    """
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return []
    return list(_last_lines(path, st.st_size, st.st_mtime_ns, count))


@functools.lru_cache(maxsize=64)
def _last_lines(path: Path, size: int, mtime_ns: int, count: int) -> tuple[str, ...]:
    kept: deque[str] = deque(maxlen=count)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ()
    read = 0
    try:
        with os.fdopen(fd, "rb") as raw, gzip.GzipFile(fileobj=raw) as text:
            while read < MAX_READ and (line := text.readline(MAX_LINE)):
                read += len(line)
                if not line.endswith(b"\n"):  # a cut line: skip the rest of it
                    while (rest := text.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                        read += len(rest)
                        if read >= MAX_READ:
                            break
                kept.append(line.decode("utf-8", "replace").rstrip("\r\n"))
    except (OSError, EOFError, zlib.error):
        pass  # being written, or damaged: the lines read so far
    return tuple(kept)


def console_tail(logs_dir: Path, namespace: str, vm: str, count: int = LINES) -> tuple[str, list[str]] | None:
    """(file name, its last lines) of the VM's newest console file, or None if LOGS_DIR has none."""
    folder = vm_folder(logs_dir, namespace, vm)
    newest = newest_console_file(folder) if folder else None
    if newest is None:
        return None
    return newest.name, last_lines(newest, count)
