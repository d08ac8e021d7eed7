"""Watch streams, with selectors and ``resourceVersion`` honoured.

Collectors do not need watches, but ``kubectl delete`` does: after deleting a namespace (which
stays ``Terminating`` while its contents go) it lists the object by ``metadata.name`` and watches
from that list's ``resourceVersion`` until a ``DELETED`` event. kmock's watch replays every object
of the resource regardless of selectors and ignores ``resourceVersion``, so an unrelated deletion
would end kubectl's wait early and a deletion between list and watch would be missed. Here every
change is numbered and kept in a bounded history: a watch resumes exactly after the version it
was given, filtered like a list, and a version older than the history gets ``410 Expired``.
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


@dataclass(frozen=True)
class Event:
    version: int
    rt: ResourceType
    type: str
    obj: Body


@dataclass(eq=False)  # identity-hashed: kept in a set while streaming
class Watcher:
    rt: ResourceType
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)  # None: the server stops

    def wants(self, event: Event) -> bool:
        if event.rt is not self.rt:
            return False
        meta = event.obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.labels.requirements and not self.labels.matches(meta.get("labels") or {}):
            return False
        return not self.fields.requirements or self.fields.matches(
            field_values(event.obj, self.rt.field_labels)
        )


class WatchHub:
    """The numbered change history and the live watchers; loop thread only."""

    def __init__(self) -> None:
        self._history: deque[Event] = deque(maxlen=HISTORY)
        self._watchers: set[Watcher] = set()

    def publish(self, version: int, rt: ResourceType, event_type: str, obj: Body) -> None:
        event = Event(version, rt, event_type, obj)
        self._history.append(event)
        for watcher in self._watchers:
            if watcher.wants(event):
                watcher.queue.put_nowait(event)

    def since(self, version: int) -> list[Event]:
        if self._history and version < self._history[0].version - 1:
            raise ApiError(
                410, f"too old resource version: {version} ({self._history[0].version - 1})", reason="Expired"
            )
        return [event for event in self._history if event.version > version]

    def add(self, watcher: Watcher) -> None:
        self._watchers.add(watcher)

    def remove(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def close_all(self) -> None:
        """End every open watch (the server is stopping)."""
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)


def _line(event_type: str, obj: Body) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


async def serve(
    raw: web.BaseRequest,
    hub: WatchHub,
    watcher: Watcher,
    initial: Iterable[Body],
    resource_version: str | None,
    timeout_seconds: float,
) -> web.StreamResponse:
    """Stream ``{"type", "object"}`` lines: the starting state (or the missed changes), then live ones."""
    replay = [] if resource_version in (None, "", "0") else hub.since(int(resource_version))
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    response.enable_chunked_encoding()
    hub.add(watcher)
    try:
        await response.prepare(raw)
        if resource_version in (None, "", "0"):
            for obj in initial:
                await response.write(_line("ADDED", obj))
        for event in replay:
            if watcher.wants(event):
                await response.write(_line(event.type, event.obj))
        deadline = time.monotonic() + timeout_seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                live = await asyncio.wait_for(watcher.queue.get(), remaining)
            except TimeoutError:
                break
            if live is None:
                break
            await response.write(_line(live.type, live.obj))
        await response.write_eof()
        return response
    except ConnectionError:
        return response
    finally:
        hub.remove(watcher)
