"""Watch streams as kube-apiserver's watch cache serves them: selectors, ``resourceVersion``,
bookmarks, ``timeoutSeconds``, and ``410 Expired`` for a version it no longer has.

Collectors do not need watches, but ``kubectl delete`` does: after deleting a namespace (which
stays ``Terminating`` while its contents go) it lists the object by ``metadata.name`` and watches
from that list's ``resourceVersion`` until a ``DELETED`` event. kmock's watch replays every object
of the resource regardless of selectors and ignores ``resourceVersion``, so an unrelated deletion
would end kubectl's wait early and a deletion between list and watch would be missed. Here every
change is numbered and kept in a bounded history: a watch resumes exactly after the version it
was given, filtered like a list, and a version older than the history gets ``410 Expired``.

Collectors keep VMIs and pods from watches, so the rest of the contract is modelled too, after
staging/src/k8s.io/apiserver/pkg/storage/cacher/ (cacher.go ``Watch``, cache_watcher.go):

* a too-old version is not an HTTP error: the watch is accepted and its only event is an ``ERROR``
  whose object is a ``Status`` with code 410 (cacher.go ``Watch`` returns ``newErrWatcher`` "to match
  the uncached watch implementation");
* with ``allowWatchBookmarks=true``, a ``BOOKMARK`` event (an object of the watched kind with only
  ``metadata.resourceVersion``) every ``bookmark_period`` seconds (a minute in kube-apiserver; tests
  shorten it) and one 2 s before the ``timeoutSeconds`` deadline (cache_watcher.go
  ``nextBookmarkTime``), sent only when every change before it has been sent;
* tests can compact the history (``compact``: a version at or before the given one gets 410, as
  after etcd compaction) and drop every open watch connection (``drop_all``: the TCP connection is cut,
  as when an API server restarts or a load balancer resets it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .errors import ApiError
from .resources import ResourceType
from .selectors import FieldSelector, LabelSelector, field_values

Body = dict[str, Any]
HISTORY = 20_000
BOOKMARK_PERIOD = 60.0  # kube-apiserver's bookmark frequency (cacher.go: a minute)
BEFORE_DEADLINE = 2.0  # cache_watcher.go nextBookmarkTime: "2s before the deadline"
DROP = "drop"  # queued to a watcher: cut its connection


@dataclass(frozen=True)
class Event:
    version: int
    rt: ResourceType
    type: str
    obj: Body
    prev: Body | None = None  # the object before this change (None: it is new)


Line = tuple[str, Body]  # an event as a watcher sends it: (type, object)


@dataclass(eq=False)  # identity-hashed: kept in a set while streaming
class Watcher:
    rt: ResourceType
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    # None: the server stops (the stream ends cleanly); DROP: the connection is cut
    queue: asyncio.Queue[Line | str | None] = field(default_factory=asyncio.Queue)

    def convert(self, event: Event) -> Line | None:
        """What this watcher is sent of ``event``, if anything: the watch cache's selector rule
        (staging/src/k8s.io/apiserver/pkg/storage/cacher/cache_watcher.go ``convertToWatchEvent``).

        An object that starts matching the selectors arrives as ADDED, one that stops matching as
        DELETED (its previous state, at the event's version), one that matches before and after as
        MODIFIED; a deletion is sent when the deleted object matched.
        """
        if event.rt is not self.rt:
            return None
        now = event.type != "DELETED" and self._matches(event.obj)
        before = (
            self._matches(event.prev if event.prev is not None else event.obj)
            if (event.prev is not None or event.type == "DELETED")
            else False
        )
        if now:
            return ("MODIFIED" if before else "ADDED"), event.obj
        if not before:
            return None
        if event.type == "DELETED":
            return "DELETED", event.obj
        version = event.obj["metadata"]["resourceVersion"]
        assert event.prev is not None
        return "DELETED", {**event.prev, "metadata": {**event.prev["metadata"], "resourceVersion": version}}

    def _matches(self, obj: Body) -> bool:
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.labels.requirements and not self.labels.matches(meta.get("labels") or {}):
            return False
        return not self.fields.requirements or self.fields.matches(field_values(obj, self.rt.field_labels))


class WatchHub:
    """The numbered change history and the live watchers; loop thread only."""

    def __init__(self) -> None:
        self._history: deque[Event] = deque(maxlen=HISTORY)
        self._watchers: set[Watcher] = set()
        self._current: dict[tuple[ResourceType, str | None, str], Body] = {}  # each object's last state
        self._compacted = 0  # versions at or before this one are gone
        self.latest = 0  # the newest version published
        self.bookmark_period = BOOKMARK_PERIOD

    def publish(self, version: int, rt: ResourceType, event_type: str, obj: Body) -> None:
        meta = obj["metadata"]
        key = (rt, meta.get("namespace"), meta["name"])
        prev = self._current.pop(key, None) if event_type == "DELETED" else self._current.get(key)
        if event_type != "DELETED":
            self._current[key] = obj
        event = Event(version, rt, event_type, obj, prev)
        self._history.append(event)
        self.latest = max(self.latest, version)
        for watcher in self._watchers:
            if (line := watcher.convert(event)) is not None:
                watcher.queue.put_nowait(line)

    def since(self, version: int) -> list[Event]:
        oldest = max(self._compacted, self._history[0].version - 1 if self._history else 0)
        if version < oldest:
            raise ApiError(410, f"too old resource version: {version} ({oldest})", reason="Expired")
        return [event for event in self._history if event.version > version]

    def compact(self, through: int | None = None) -> int:
        """Forget the changes up to version ``through`` (default: all of them); returns that version.

        A watch from an older version then gets 410, and so does a list continue token made before it.
        """
        through = self.latest if through is None else through
        self._compacted = max(self._compacted, through)
        while self._history and self._history[0].version <= through:
            self._history.popleft()
        return self._compacted

    def is_compacted(self, version: int) -> bool:
        return version < self._compacted

    def add(self, watcher: Watcher) -> None:
        self._watchers.add(watcher)

    def remove(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def close_all(self) -> None:
        """End every open watch (the server is stopping)."""
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)

    def drop_all(self) -> int:
        """Cut the connection of every open watch; returns how many there were."""
        for watcher in self._watchers:
            watcher.queue.put_nowait(DROP)
        return len(self._watchers)


def bookmark(rt: ResourceType, version: int) -> Body:
    """What kube-apiserver sends as a bookmark's object: the kind, and only the resourceVersion."""
    return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": {"resourceVersion": str(version)}}


def _line(event_type: str, obj: Body) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


async def serve(
    raw: web.BaseRequest,
    hub: WatchHub,
    watcher: Watcher,
    initial: Iterable[Body],
    resource_version: str | None,
    timeout_seconds: float,
    bookmarks: bool = False,
) -> web.StreamResponse:
    """Stream ``{"type", "object"}`` lines: the starting state (or the missed changes), then live ones."""
    try:
        replay = [] if resource_version in (None, "", "0") else hub.since(int(resource_version))
        expired: ApiError | None = None
    except ApiError as error:
        replay, expired = [], error
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    response.enable_chunked_encoding()
    hub.add(watcher)
    try:
        await response.prepare(raw)
        if expired is not None:
            await response.write(_line("ERROR", expired.status()))
            await response.write_eof()
            return response
        if resource_version in (None, "", "0"):
            for obj in initial:
                await response.write(_line("ADDED", obj))
        for event in replay:
            if (line := watcher.convert(event)) is not None:
                await response.write(_line(*line))
        await _stream_live(raw, response, hub, watcher, timeout_seconds, bookmarks)
        return response
    except ConnectionError:
        return response
    finally:
        hub.remove(watcher)


async def _stream_live(
    raw: web.BaseRequest,
    response: web.StreamResponse,
    hub: WatchHub,
    watcher: Watcher,
    timeout_seconds: float,
    bookmarks: bool,
) -> None:
    now = time.monotonic()
    deadline = now + timeout_seconds
    next_bookmark = _next_bookmark(now, deadline, hub.bookmark_period) if bookmarks else None
    while (remaining := deadline - time.monotonic()) > 0:
        wait = (
            remaining if next_bookmark is None else max(0.0, min(remaining, next_bookmark - time.monotonic()))
        )
        try:
            live = await asyncio.wait_for(watcher.queue.get(), wait)
        except TimeoutError:
            if next_bookmark is not None and time.monotonic() >= next_bookmark:
                # the queue is empty: every change up to hub.latest has been sent
                await response.write(_line("BOOKMARK", bookmark(watcher.rt, hub.latest)))
                next_bookmark = _next_bookmark(time.monotonic(), deadline, hub.bookmark_period)
            continue
        if live is None:
            break
        if live == DROP:
            if raw.transport is not None:
                raw.transport.abort()
            return
        assert isinstance(live, tuple)
        await response.write(_line(*live))
    await response.write_eof()


def _next_bookmark(now: float, deadline: float, period: float) -> float | None:
    """cache_watcher.go ``nextBookmarkTime``: a period from now, or 2 s before the deadline if sooner;
    none once that moment has passed."""
    heartbeat = min(now + period, deadline - BEFORE_DEADLINE)
    return heartbeat if heartbeat >= now else None
