"""Where things go under DATA_DIR: a folder per VM, one gzip file per stream and window.

``$DATA_DIR/<vm>/`` as the original stats-logs-collector has it, or ``$DATA_DIR/<namespace>/<vm>/`` when
several namespaces are watched (the same VM name in two namespaces must not share a folder). Files are named
by the start of their window, so a listing sorts in time order:

* ``<pod>.<container>.<YYYYMMDDTHHMMSSZ>.log.gz`` for a virt-launcher container,
* ``<handler pod>.<YYYYMMDDTHHMMSSZ>.log.gz`` for the virt-handler lines about the VM.

A file being written is ``.<name>.tmp`` in the same folder; the collector's own state is in
``$DATA_DIR/.logs-collector/``. Both are hidden, and never taken for collected logs.
"""

from __future__ import annotations

import calendar
import re
import time
from pathlib import Path

from .cursor import NANOS

SUFFIX = ".log.gz"
TEMP_SUFFIX = ".tmp"
STATE_DIR = ".logs-collector"
_WINDOW = re.compile(r"\.(\d{8}T\d{6}Z)\.log\.gz$")


def window_stamp(nanos: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(nanos // NANOS))


def launcher_file(pod: str, container: str, window_start: int) -> str:
    return f"{_safe(pod)}.{_safe(container)}.{window_stamp(window_start)}{SUFFIX}"


def handler_file(pod: str, window_start: int) -> str:
    return f"{_safe(pod)}.{window_stamp(window_start)}{SUFFIX}"


def temp_name(final: str) -> str:
    return f".{final}{TEMP_SUFFIX}"


def is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(SUFFIX + TEMP_SUFFIX)


def vm_folder(data_dir: Path, namespace: str, vm: str, per_namespace: bool) -> Path:
    if per_namespace:
        return data_dir / _safe(namespace) / _safe(vm)
    return data_dir / _safe(vm)


def window_start_of(name: str) -> float | None:
    """The window start (unix seconds) written in a collected file's name, or None."""
    match = _WINDOW.search(name)
    if match is None:
        return None
    return float(calendar.timegm(time.strptime(match.group(1), "%Y%m%dT%H%M%SZ")))


class UnusableName(ValueError):
    """A name from the API that cannot be one file or folder name; the object it names is skipped."""


NAME_MAX = 255  # bytes in one file name (Linux)


def _safe(name: str) -> str:
    """Kubernetes names are DNS names, but the API answer is outside input: anything else is refused.

    Refused: empty, ``.``/``..`` and every other name starting with a dot (hidden: our temp files and
    state), ``/``, NUL, and names over NAME_MAX bytes.
    """
    if not name or name.startswith(".") or "/" in name or "\x00" in name:
        raise UnusableName(f"not a usable file name: {name!r}")
    if len(name.encode("utf-8", "surrogatepass")) > NAME_MAX:
        raise UnusableName(f"not a usable file name: over {NAME_MAX} bytes ({name[:40]!r}...)")
    return name
