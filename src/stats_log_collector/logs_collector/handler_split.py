"""Which VM a virt-handler line is about: one pass over a node's log, shared by all its VMs.

A node's handler log is read once per run, and each line goes only to the VMs it names (KubeVirt's JSON
keys found by pattern, else the VM's UID, ``namespace/name``, ``namespace_name`` or a name held by one VM
of the node); each VM keeps its own window. The rules and why: docs/logs-collector.md, "The handler-log
split per VM".
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import defaultdict
from typing import TypeVar

from .cursor import Boundary, Cursor, EndTracker, line_stamp

log = logging.getLogger(__name__)

_UID = re.compile(rb'"uid":"([^"]*)"')
_NAME = re.compile(rb'"name":"([^"]*)"')
_NAMESPACE = re.compile(rb'"namespace":"([^"]*)"')
# Name-like tokens of a text line (names, ``namespace/name``, paths, UIDs): every other byte becomes a
# space and the line is split, all in C. "vm-1." at the end of a sentence is also looked up as "vm-1"
# (the word sets hold both), while "vm-1.5" stays one (other) name.
_NAME_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-./"
_TO_SPACES = bytes(byte if byte in _NAME_BYTES else 0x20 for byte in range(256))


_Key = TypeVar("_Key", bytes, tuple[bytes, bytes])


@dataclasses.dataclass(frozen=True)
class VmIdentity:
    namespace: str
    name: str
    uid: str


def _add(table: dict[_Key, tuple[int, ...]], key: _Key, index: int) -> None:
    indices: tuple[int, ...] = table.get(key, ())
    if index not in indices:
        table[key] = (*indices, index)


def _with_full_stops(table: dict[bytes, tuple[int, ...]]) -> None:
    """Each word also as it ends a sentence ("vm-1.")."""
    for word in list(table):
        table.setdefault(word + b".", table[word])


class VmMatcher:
    """Maps a handler line to the indices of the VMs (of one node) it is about.

    A VM is named in a text line by its UID, as ``namespace/name`` (an informer key: virt-handler's
    "Processing event kubevirt/fedora-desktop-tiny"), as ``namespace_name`` (its libvirt domain name,
    kubevirt ``pkg/virt-launcher/virtwrap/util/libvirt_helper.go`` ``VMINamespaceKeyFunc``, also the
    watchdog file ``.../watchdog-files/default_vm-fedora``), or by its bare name when no other VM of the
    node has that name. UIDs and ``namespace_name`` are found as path components too; a bare name only
    as a whole word (the last part of ``other/vgpu`` is not the VM ``default/vgpu``).
    """

    def __init__(self, vms: list[VmIdentity]) -> None:
        self._by_uid: dict[bytes, tuple[int, ...]] = {}
        self._by_name: dict[tuple[bytes, bytes], tuple[int, ...]] = {}
        self._qualified: dict[bytes, tuple[int, ...]] = {}  # UID, namespace/name, namespace_name
        bare: dict[bytes, tuple[int, ...]] = {}
        namespaces_of: dict[bytes, set[bytes]] = defaultdict(set)
        for index, vm in enumerate(vms):
            namespace, name, uid = vm.namespace.encode(), vm.name.encode(), vm.uid.encode()
            if uid:
                _add(self._by_uid, uid, index)
                _add(self._qualified, uid, index)
            _add(self._by_name, (namespace, name), index)
            _add(self._qualified, namespace + b"/" + name, index)
            _add(self._qualified, namespace + b"_" + name, index)
            _add(bare, name, index)
            namespaces_of[name].add(namespace)
        # A bare name held by VMs of several namespaces names none of them: it goes nowhere (counted).
        self._bare = {name: found for name, found in bare.items() if len(namespaces_of[name]) == 1}
        self._ambiguous = frozenset(name for name in bare if len(namespaces_of[name]) > 1)
        self._ambiguous |= frozenset(name + b"." for name in self._ambiguous)
        _with_full_stops(self._qualified)
        _with_full_stops(self._bare)
        self._qualified_words = frozenset(self._qualified)
        self._bare_words = frozenset(self._bare)
        self.ambiguous_lines = 0  # lines that named a VM only by a name several VMs of the node share

    def match(self, line: bytes, content: int = 0) -> tuple[int, ...]:
        """The VMs ``line[content:]`` is about (usually one, often none)."""
        if line.startswith(b"{", content):
            uid = _UID.search(line, content)
            if uid is not None:
                found = self._by_uid.get(uid.group(1))
                if found is not None:
                    return found
            name = _NAME.search(line, content)
            if name is not None:
                namespace = _NAMESPACE.search(line, content)
                if namespace is not None:
                    return self._by_name.get((namespace.group(1), name.group(1)), ())
            if (uid is not None and uid.group(1)) or name is not None:
                return ()  # about another object
        return self._text(line, content)

    def _text(self, line: bytes, content: int) -> tuple[int, ...]:
        """Whole tokens (set intersections, in C), then the components of the paths among them."""
        tokens = frozenset(line[content:].translate(_TO_SPACES).split())
        found: set[int] = set()
        qualified = self._qualified_words.intersection(tokens)
        for word in qualified:
            found.update(self._qualified[word])
        for word in self._bare_words.intersection(tokens):
            found.update(self._bare[word])
        for token in tokens:
            if b"/" in token and token not in qualified:
                for part in token.split(b"/"):
                    found.update(self._qualified.get(part, ()))
        if not found and not self._ambiguous.isdisjoint(tokens):
            self._count_ambiguous(line[content:])
        return tuple(sorted(found))

    def _count_ambiguous(self, text: bytes) -> None:
        self.ambiguous_lines += 1
        if self.ambiguous_lines == 1:  # once per matcher: one node's log in one run
            log.debug(
                "a handler line names a VM only by a name several VMs of the node share; kept for none",
                extra={"line": text[:200].decode("utf-8", "replace")},
            )


TAIL_LINES = 32
BLOCK_BYTES = 512 * 1024


class _Target:
    __slots__ = ("boundary", "end", "kept_bytes", "lines")

    def __init__(self, start: Cursor) -> None:
        self.boundary = Boundary(start)
        self.end = EndTracker(start)
        self.lines: list[bytes] = []
        self.kept_bytes = 0


class HandlerSplitter:
    """A node's handler log, chunk by chunk, split into one stream of kept lines per VM.

    The common line (JSON with the UID of one of the node's VMs; KubeVirt sorts keys, so ``uid`` is
    last and found from the end) costs a few C calls and a list append; the others go through
    ``VmMatcher``. Window boundaries and cursors are then settled per VM on its share of the block.
    """

    def __init__(self, vms: list[VmIdentity], starts: list[Cursor], block_bytes: int = BLOCK_BYTES) -> None:
        self._block_bytes = block_bytes
        self._matcher = VmMatcher(vms)
        self._by_uid = {vm.uid.encode() + b'"': index for index, vm in enumerate(vms) if vm.uid}
        self._targets = [_Target(start) for start in starts]
        self._stream_end = EndTracker(Cursor(0))  # the latest stamp of the node's log, about anyone
        self._pending: list[bytes] = []
        self._pending_size = 0

    def feed(self, chunk: bytes) -> dict[int, bytes]:
        """Kept bytes per VM index, for whole lines, once BLOCK_BYTES have come (per-block work is
        then a small share: each VM gets a few hundred lines at a time, not a few)."""
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        if self._pending_size < self._block_bytes:
            return {}
        data = b"".join(self._pending)
        cut = data.rfind(b"\n") + 1
        self._pending, self._pending_size = [data[cut:]], len(data) - cut
        return self._split(data[: cut - 1]) if cut else {}

    def finish(self) -> dict[int, bytes]:
        data = b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        if data.endswith(b"\n"):
            data = data[:-1]
        return self._split(data) if data else {}

    def cursors(self) -> list[Cursor]:
        """Each VM's cursor once the log was read to its end: its latest line, or the log's latest
        stamp when that is later (nothing about the VM up to there was missed, and a VM that left the
        node long ago does not keep the node's next read starting from back then)."""
        stream = self._stream_end.cursor().nanos
        cursors = []
        for target in self._targets:
            own = target.end.cursor()
            cursors.append(Cursor(stream, 0, own.restarts) if stream > own.nanos else own)
        return cursors

    def kept_bytes(self) -> list[int]:
        return [target.kept_bytes for target in self._targets]

    @property
    def ambiguous_lines(self) -> int:
        """Lines that named a VM only by a bare name VMs of several namespaces of the node share."""
        return self._matcher.ambiguous_lines

    def _split(self, block: bytes) -> dict[int, bytes]:
        """Whole lines without the last newline; returns the kept bytes per VM index."""
        by_uid, match = self._by_uid, self._matcher.match
        keep = [target.lines.append for target in self._targets]
        lines = block.split(b"\n")
        self._stream_end.add_latest([line[: line.find(b" ", 0, 64)] for line in lines[-TAIL_LINES:]])
        for line in lines:
            at = line.rfind(b'"uid":"')
            if at >= 0:
                index = by_uid.get(line[at + 7 : at + 44])  # a UID is 36 characters, then a quote
                if index is not None:
                    keep[index](line)
                    continue
            for index in match(line, line.find(b" ", 0, 64) + 1):
                keep[index](line)
        kept: dict[int, bytes] = {}
        for index, target in enumerate(self._targets):
            if target.lines:
                data = self._settle(target)
                if data:
                    kept[index] = data
        return kept

    @staticmethod
    def _settle(target: _Target) -> bytes:
        lines = target.lines[:]
        target.lines.clear()
        if not target.boundary.open:
            first = 0
            while first < len(lines) and not target.boundary.passes(line_stamp(lines[first])[1]):
                first += 1
            lines = lines[first:]
            if not lines:
                return b""
        # the latest stamp among the last lines (see cursor.WindowFilter._track_end)
        target.end.add_latest([line[: line.find(b" ", 0, 64)] for line in lines[-TAIL_LINES:]])
        lines.append(b"")
        data = b"\n".join(lines)
        target.kept_bytes += len(data)
        return data
