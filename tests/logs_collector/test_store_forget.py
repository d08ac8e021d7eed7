"""When the store may drop a pod's cursors: never while the pod is listed, at once when it is deleted."""

from __future__ import annotations

from pathlib import Path

from stats_log_collector.logs_collector.cursor import Cursor
from stats_log_collector.logs_collector.plan import VmRef, closed_key, launcher_key
from stats_log_collector.logs_collector.store import CursorStore

VM = VmRef("vms", "vm-1")
KEYS = {launcher_key(VM, "pod-a", "compute"): Cursor(5, 1), closed_key(VM, "pod-a"): Cursor(9)}
HOUR = 3600.0


def opened(data: Path) -> CursorStore:
    store = CursorStore(data)
    store.open()
    return store


def test_a_closed_pod_still_listed_is_kept_past_the_retention(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.commit(KEYS)
    now = 1_000_000.0
    for hour in range(1, 50):  # a Completed migration source, listed run after run for two days
        store.snapshot(KEYS, now + hour * HOUR, forget_after_secs=24 * HOUR)
    assert dict(store.cursors) == KEYS
    store.close()
    assert dict(opened(tmp_path).cursors) == KEYS


def test_a_deleted_pod_is_forgotten_at_once_and_a_crash_only_delays_it(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.commit(KEYS)
    store.snapshot(KEYS, 1_000_000.0, forget_after_secs=24 * HOUR)
    store.forget(KEYS)
    assert dict(store.cursors) == {}
    store.close()  # killed before the next snapshot: the forgetting was not journalled
    again = opened(tmp_path)
    assert dict(again.cursors) == KEYS
    again.snapshot([], 1_000_000.0 + 25 * HOUR, forget_after_secs=24 * HOUR)  # unseen: pruned
    assert dict(again.cursors) == {}
    again.close()
