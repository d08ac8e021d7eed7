"""When to act next: on a fixed grid, never drifting, never overlapping.

memstat samples and logs-collector runs on this grid.

``sleep(interval)`` after each poll drifts by the poll's duration every time, so samples from several
collectors (or days of one) stop lining up; the grid ``start + k * interval`` does not. A poll that takes
longer than the interval must not overlap the next one, so the ticks it overran are skipped (and
counted), and sampling resumes on the grid.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Tick:
    at: float  # when to take the sample (same clock as ``now``)
    skipped: int  # grid points that passed while the previous poll ran


def next_tick(start: float, interval: float, previous: float | None, now: float) -> Tick:
    """The first grid point after ``previous`` (the last tick taken) that is not already in the past."""
    if previous is None:
        return Tick(start, 0)
    due = previous + interval
    if now <= due:
        return Tick(due, 0)
    missed = math.ceil((now - due) / interval - 1e-9)
    return Tick(start + round((due - start) / interval + missed) * interval, missed)
