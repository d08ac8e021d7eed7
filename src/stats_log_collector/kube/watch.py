"""``ObjectCache``: one kind of object kept current from a list and a watch, instead of a list per poll.

At 10,000 VMs a VMI list and a launcher-pod list are about 50 MB of JSON, for objects that rarely
change; a watch sends only the changes. The cache follows client-go's reflector
(staging/src/k8s.io/client-go/tools/cache/reflector.go, ``ListAndWatch``, ``watch`` and
``handleAnyWatch``/``watchHandler``):

* a full list, paginated (``limit``/``continue``), gives the objects and the list's
  ``resourceVersion``;
* a watch from that version (``allowWatchBookmarks=true``, ``timeoutSeconds`` drawn between the
  minimum and twice it, as reflector's ``minWatchTimeout`` does) streams ``{"type", "object"}`` lines
  (apimachinery pkg/apis/meta/v1/types.go ``WatchEvent``); each ADDED, MODIFIED, DELETED and BOOKMARK
  moves the last seen version on;
* a watch that ends (timeout, dropped connection, a server error) is reopened from the last seen
  version, so nothing is missed and nothing repeated; bookmarks keep that version recent even when the
  watched objects do not change (kube-apiserver's watch cache sends one shortly before the timeout:
  staging/src/k8s.io/apiserver/pkg/storage/cacher/cache_watcher.go ``nextBookmarkTime``);
* ``410 Gone`` (the version fell out of the server's history: an HTTP 410, or an ERROR event whose
  Status has code 410, reflector's ``isExpiredError``) means a new full list; its differences from
  the cache are delivered as changes, vanished objects as DELETED.

What the server sends is outside input. A line that is not JSON, an event without an object or whose
object has no name, an unknown event type, a line longer than the client accepts: each is logged and
counted, and since an event may have been lost the cache lists again (consistency first). An ERROR
event with another status ends that watch; it is reopened from the last version after a backoff. A
watch request refused outright (a 4xx other than 410, e.g. a role without ``watch``) is logged and
answered with a list after each backoff, so the cache never goes stale for good.

Memory: each object is kept once, as the parsed JSON, minus ``metadata.managedFields`` (server-side
apply bookkeeping nobody here reads, often a third of a pod; controller-runtime strips it the same way,
pkg/cache ``TransformStripManagedFields``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import KubeError, KubeRejected, LineTooLong
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .client import KubeClient

log = logging.getLogger(__name__)

JSON = dict[str, Any]
OnChange = Callable[[JSON | None, JSON | None], None]
Key = tuple[str, str]  # namespace ("" for cluster objects), name
M = TypeVar("M")

MIN_WATCH_TIMEOUT_SECS = 300.0  # client-go reflector's default minWatchTimeout (5 minutes)
GONE = 410


class _Relist(Exception):
    """The watch cannot go on from the last version: list everything again."""

    def __init__(self, reason: str, expired: bool = False) -> None:
        super().__init__(reason)
        self.expired = expired


class ObjectCache:
    """One resource kind in some namespaces (``("*",)``: all), optionally label-selected.

    A full list, then a watch from its resourceVersion, resumed from the last seen version after a
    dropped or timed-out connection, a new full list after 410 Gone whose differences from the cache
    are delivered as changes. Create with the client's factories (``KubeClient.vmi_cache`` ...).
    """

    def __init__(
        self,
        client: KubeClient,
        what: str,
        paths: Sequence[str],
        params: dict[str, str] | None = None,
        *,
        min_watch_timeout: float = MIN_WATCH_TIMEOUT_SECS,
        policy: RetryPolicy | None = None,
        seed: int | None = None,
        transform: Callable[[JSON], JSON] | None = None,
    ) -> None:
        """``transform``: applied to each object before it is stored and handed to subscribers (a
        list's items page by page, so a full list is never held whole), to keep only what the caller
        reads (client-go tools/cache/shared_informer.go ``TransformFunc``); it must keep metadata's
        name, namespace, uid and resourceVersion."""
        self._transform = transform
        self._client = client
        self.what = what
        self._paths = tuple(paths)
        self._params = dict(params or {})
        self._min_watch_timeout = min_watch_timeout
        self._policy = policy or RetryPolicy(retries=0, base_delay=0.5, max_delay=30.0)
        self._rng = random.Random(seed)
        self._objects: dict[Key, JSON] = {}
        self._subscribers: list[OnChange] = []
        self._synced_paths: set[str] = set()
        self._synced = asyncio.Event()
        # counters, for metrics and benchmarks
        self.lists = 0  # full lists (the first included)
        self.watches = 0  # watch connections opened
        self.events = 0  # ADDED, MODIFIED and DELETED events applied
        self.bookmarks = 0
        self.relists_410 = 0  # lists again because the version was too old
        self.bad_lines = 0  # lines that were not a usable event (each led to a new list)
        self.error_events = 0  # ERROR events other than 410
        self.callback_errors = 0
        self.unreadable = 0  # objects ``parsed`` could not make a model of

    # --- what callers use ------------------------------------------------------------------------------

    def subscribe(self, on_change: OnChange) -> None:
        """Call ``on_change(old, new)`` on every change from now on (before ``run``: replays nothing)."""
        self._subscribers.append(on_change)

    def snapshot(self) -> list[JSON]:
        """The current objects (shared, not copies: do not mutate them)."""
        return list(self._objects.values())

    def __len__(self) -> int:
        return len(self._objects)

    def parsed(self, parse: Callable[[JSON], M]) -> list[M]:
        """The current objects made into models by ``parse``; one it fails on (a hostile object) is left
        out alone: logged and counted in ``unreadable``."""
        models: list[M] = []
        for obj in self._objects.values():
            try:
                models.append(parse(obj))
            except Exception as exc:
                self.unreadable += 1
                meta = obj.get("metadata")
                name = meta.get("name") if isinstance(meta, dict) else None
                log.warning(
                    "object left out: unreadable",
                    extra={"objects": self.what, "object": str(name)[:253], "error": repr(exc)},
                )
        return models

    @property
    def synced(self) -> bool:
        """Every namespace's first full list is in."""
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        """Return once every namespace's first full list is in."""
        await self._synced.wait()

    async def run(self, stop: asyncio.Event) -> None:
        """List and watch every path until ``stop`` is set; failures are retried with backoff."""
        tasks = [asyncio.create_task(self._reflect(path, stop)) for path in self._paths]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- one path: list, then watch ------------------------------------------------------------------

    async def _reflect(self, path: str, stop: asyncio.Event) -> None:
        version: str | None = None  # None: list first
        failures = 0
        while not stop.is_set():
            try:
                if version is None:
                    version = await self._relist(path)
                version, lines = await self._watch(path, version)
                # A watch that ended at its timeout is reopened at once; one that ended without a
                # single line (a server closing at once) waits, as a failure would.
                failures = 0 if lines else failures + 1
            except _Relist as relist:
                if relist.expired:
                    self.relists_410 += 1
                # a short wait, growing if it repeats: a hostile stream must not make us list in a
                # tight loop (reflector's ListAndWatch runs under a backoff manager the same way)
                failures += 1
                log.info("listing again", extra={"objects": self.what, "path": path, "reason": str(relist)})
                version = None
            except KubeError as exc:
                failures += 1
                if isinstance(exc, _ResumeFrom):
                    version = exc.version
                log.warning(
                    "list or watch failed, retrying",
                    extra={"objects": self.what, "path": path, "error": str(exc), "failures": failures},
                )
            if failures:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._policy.delay(failures, self._rng))

    async def _relist(self, path: str) -> str:
        """List ``path`` in full, deliver its differences from the cache, return the list's version."""
        items, version = await self._client.list_objects(path, self._params, self._keep)
        self.lists += 1
        namespace = _path_namespace(path)
        fresh: dict[Key, JSON] = {}
        for item in items:
            key = _key(item)
            if key is None:
                self.bad_lines += 1
                log.warning("object without a name in a list, ignored", extra={"objects": self.what})
                continue
            fresh[key] = item  # kept (trimmed, transformed) page by page by list_objects
        for key, new in fresh.items():
            self._apply(key, self._objects.get(key), new)
        gone = [
            key for key in self._objects if (namespace is None or key[0] == namespace) and key not in fresh
        ]
        for key in gone:
            self._apply(key, self._objects[key], None)
        if path not in self._synced_paths:
            self._synced_paths.add(path)
            if len(self._synced_paths) == len(self._paths):
                self._synced.set()
        return version

    async def _watch(self, path: str, version: str) -> tuple[str, int]:
        """One watch connection from ``version``: the last version seen when it ended normally, and
        how many lines it brought."""
        timeout = int(self._min_watch_timeout * (self._rng.random() + 1.0))
        params = {
            **self._params,
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout),
        }
        try:
            async with self._client.watch_lines(path, params, timeout) as lines:
                self.watches += 1
                count = 0
                async for line in lines:
                    count += 1
                    if line.strip():
                        version = self._event(line) or version
        except LineTooLong as exc:
            raise self._bad(str(exc)) from None
        except KubeError as exc:
            if exc.status == GONE:  # reflector's isExpiredError on the watch request itself
                raise _Relist(f"resourceVersion {version} is too old: {exc}", expired=True) from None
            if isinstance(exc, KubeRejected):
                # A watch refused for good (403: a role without the watch verb) would leave the cache
                # as it was forever; listing again after each backoff keeps it within that of the truth.
                raise _Relist(f"watch refused: {exc}") from None
            raise _ResumeFrom(version, exc) from None
        return version, count

    def _event(self, line: bytes) -> str | None:
        """Apply one watch line; the new last version (None: unchanged). Raises ``_Relist``."""
        try:
            event = json.loads(line)
        except ValueError:
            raise self._bad(f"a watch line that is not JSON ({len(line)} bytes)") from None
        if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
            raise self._bad("a watch event without an object")
        kind, obj = event.get("type"), event["object"]
        if kind == "ERROR":
            return self._error_event(obj)
        version = _version(obj)
        if kind == "BOOKMARK":  # only metadata.resourceVersion is meaningful in it
            self.bookmarks += 1
            return version
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            raise self._bad(f"an unknown watch event type {str(kind)[:40]!r}")
        key = _key(obj)
        if key is None:
            raise self._bad(f"a {kind} event whose object has no name")
        self.events += 1
        self._apply(key, self._objects.get(key), None if kind == "DELETED" else self._keep(obj))
        return version

    def _keep(self, obj: JSON) -> JSON:
        """What is stored of an object: trimmed, then the caller's ``transform``."""
        obj = _trim(obj)
        return self._transform(obj) if self._transform is not None else obj

    def _error_event(self, status: JSON) -> str | None:
        code = status.get("code")
        message = str(status.get("message", ""))[:300]
        if code == GONE:
            raise _Relist(f"ERROR event 410: {message}", expired=True)
        self.error_events += 1
        raise KubeError(f"ERROR event {code!r}: {message}", code if isinstance(code, int) else None)

    def _bad(self, what: str) -> _Relist:
        self.bad_lines += 1
        log.warning("unusable watch line, listing again", extra={"objects": self.what, "problem": what})
        return _Relist(what)

    # --- the store and the callbacks -----------------------------------------------------------------

    def _apply(self, key: Key, old: JSON | None, new: JSON | None) -> None:
        """Store ``new`` (None: remove) and tell subscribers, unless nothing changed.

        A new object under an old name (another UID) is the old one DELETED, then the new one ADDED.
        """
        if new is None:
            if old is None:
                return
            del self._objects[key]
            self._notify(old, None)
            return
        self._objects[key] = new
        if old is not None and _uid(old) != _uid(new):
            self._notify(old, None)
            old = None
        elif old is not None and _version(old) == _version(new) and _version(new) is not None:
            return  # a relist that found it unchanged
        self._notify(old, new)

    def _notify(self, old: JSON | None, new: JSON | None) -> None:
        for on_change in self._subscribers:
            try:
                on_change(old, new)
            except Exception:
                self.callback_errors += 1
                log.exception("a watch subscriber failed", extra={"objects": self.what})


class _ResumeFrom(KubeError):
    """The watch failed after ``version``: reopen it from there."""

    def __init__(self, version: str, cause: KubeError) -> None:
        super().__init__(str(cause), cause.status)
        self.version = version


def _trim(obj: JSON) -> JSON:
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        del meta["managedFields"]
    return obj


def _key(obj: JSON) -> Key | None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return None
    name, namespace = meta.get("name"), meta.get("namespace") or ""
    if not isinstance(name, str) or not name or not isinstance(namespace, str):
        return None
    return namespace, name


def _version(obj: JSON) -> str | None:
    meta = obj.get("metadata")
    version = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return version if isinstance(version, str) and version else None


def _uid(obj: JSON) -> object:
    meta = obj.get("metadata")
    return meta.get("uid") if isinstance(meta, dict) else None


def _path_namespace(path: str) -> str | None:
    """The namespace a list path is limited to (None: every namespace)."""
    parts = path.strip("/").split("/")
    if "namespaces" in parts[:-1]:
        return parts[parts.index("namespaces") + 1]
    return None
