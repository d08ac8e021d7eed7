"""Which VM a virt-handler line is about: one pass over a node's log, shared by all its VMs.

The original fetched a node's whole virt-handler log once per VM and copied all of it into every VM's
folder. Here the log of a node is read once per run, from the earliest cursor among its VMs, and each
line goes to the VMs it is about:

* KubeVirt's JSON lines (``{"component":"virt-handler",...,"name":"vm","namespace":"ns","uid":"..."}``):
  the VMI whose UID is ``uid``, else the VMI whose namespace and name are ``namespace`` and ``name``;
  a JSON line naming some other object goes nowhere. Keys are found by pattern, not by decoding the
  JSON: KubeVirt writes flat objects, and a quote inside a value is always escaped, so ``"uid":"`` can
  only be a key. This is several times faster than ``json.loads`` on a 50 MB log.
* Other lines (klog text, JSON lines without an object): those that name the VM, as ``namespace/name``,
  by its UID, or by its name as a whole word (a name shared by VMs of several namespaces on the node
  goes to each of them: a line is never lost, at worst it is in two folders).

Each VM keeps its own window: lines up to its cursor are dropped for it (cursor.Boundary).
"""

from __future__ import annotations

import dataclasses
import re

from .cursor import Boundary, Cursor, EndTracker, line_stamp

_UID = re.compile(rb'"uid":"([^"]*)"')
_NAME = re.compile(rb'"name":"([^"]*)"')
_NAMESPACE = re.compile(rb'"namespace":"([^"]*)"')
_NAME_CHARS = rb"A-Za-z0-9_\-"


@dataclasses.dataclass(frozen=True)
class VmIdentity:
    namespace: str
    name: str
    uid: str


class VmMatcher:
    """Maps a handler line to the indices of the VMs (of one node) it is about."""

    def __init__(self, vms: list[VmIdentity]) -> None:
        self._by_uid: dict[bytes, tuple[int, ...]] = {}
        self._by_name: dict[tuple[bytes, bytes], tuple[int, ...]] = {}
        self._by_word: dict[bytes, tuple[int, ...]] = {}
        for index, vm in enumerate(vms):
            namespace, name, uid = vm.namespace.encode(), vm.name.encode(), vm.uid.encode()
            if uid:
                self._by_uid[uid] = (*self._by_uid.get(uid, ()), index)
                self._by_word[uid] = (*self._by_word.get(uid, ()), index)
            self._by_name[(namespace, name)] = (*self._by_name.get((namespace, name), ()), index)
            self._by_word[namespace + b"/" + name] = (index,)
            self._by_word[name] = (*self._by_word.get(name, ()), index)
        words = sorted(self._by_word, key=len, reverse=True)
        alternatives = b"|".join(re.escape(word) for word in words)
        self._words = re.compile(
            rb"(?<!["
            + _NAME_CHARS
            + rb"./])("
            + alternatives
            + rb")(?!["
            + _NAME_CHARS
            + rb"]|\.[A-Za-z0-9])"
        )

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
            if uid is not None or name is not None:
                return ()  # about another object
        return self._text(line, content)

    def _text(self, line: bytes, content: int) -> tuple[int, ...]:
        found: tuple[int, ...] = ()
        for word in self._words.finditer(line, content):
            for index in self._by_word[word.group(1)]:
                if index not in found:
                    found += (index,)
        return found


class _Target:
    __slots__ = ("boundary", "end", "kept_bytes", "latest", "latest_count", "out")

    def __init__(self, start: Cursor) -> None:
        self.boundary = Boundary(start)
        self.end = EndTracker(start)
        self.out: list[bytes] = []
        self.kept_bytes = 0
        self.latest = b""  # the latest stamp kept since the last drain (see EndTracker), and its lines
        self.latest_count = 0


class HandlerSplitter:
    """A node's handler log, chunk by chunk, split into one stream of kept lines per VM."""

    def __init__(self, vms: list[VmIdentity], starts: list[Cursor]) -> None:
        self._matcher = VmMatcher(vms)
        self._targets = [_Target(start) for start in starts]
        self._carry = b""

    def feed(self, chunk: bytes) -> dict[int, bytes]:
        """Kept bytes per VM index, for the whole lines completed by ``chunk``."""
        data = self._carry + chunk if self._carry else chunk
        cut = data.rfind(b"\n") + 1
        self._carry = data[cut:]
        if not cut:
            return {}
        self._split(data[:cut].split(b"\n")[:-1])
        return self._drain()

    def finish(self) -> dict[int, bytes]:
        if self._carry:
            self._split([self._carry])
            self._carry = b""
        return self._drain()

    def cursors(self) -> list[Cursor]:
        return [target.end.cursor() for target in self._targets]

    def kept_bytes(self) -> list[int]:
        return [target.kept_bytes for target in self._targets]

    def _split(self, lines: list[bytes]) -> None:
        match, targets = self._matcher.match, self._targets
        for line in lines:
            space = line.find(b" ", 0, 64)
            found = match(line, space + 1)
            if not found:
                continue
            stamp = line[:space] if space >= 0 else b""
            for index in found:
                target = targets[index]
                if not target.boundary.open and not target.boundary.passes(line_stamp(line)[1]):
                    continue
                target.out.append(line)
                if stamp > target.latest:
                    target.latest, target.latest_count = stamp, 1
                elif stamp == target.latest:
                    target.latest_count += 1

    def _drain(self) -> dict[int, bytes]:
        drained: dict[int, bytes] = {}
        for index, target in enumerate(self._targets):
            if target.out:
                target.end.add(target.latest, target.latest_count)
                target.latest, target.latest_count = b"", 0
                target.out.append(b"")
                data = b"\n".join(target.out)
                target.out.clear()
                target.kept_bytes += len(data)
                drained[index] = data
        return drained
