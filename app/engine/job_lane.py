"""The engine's second lane: segments of background jobs, always behind synchronous segments.

- Synchronous segments are admitted first; job segments take only the rows left, at most
  `join_per_iteration` of them per iteration (so a job's prefill between two steps stays short).
- While synchronous work is queued or running, and for `sync_quiet_seconds` after it was last seen, job rows
  are held to `rows_beside_sync`; job rows beyond that are preempted when synchronous work arrives: they
  leave the running rows and go back to the head of their job's queue (their decoding so far is redone
  later), the same way rows leave on an out-of-memory step. A short synchronous clip then decodes beside at
  most that many job rows, never behind a job's backlog. The quiet period keeps the job from refilling the
  rows (a prefill a synchronous arrival would wait for, then preempt) in the short gaps between requests.
- Job audio is not counted for the synchronous admission limit (429), but is in the autoscaling signal.
The job runner (app/jobs/runner.py) keeps only a bounded window of segments in this lane.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.engine.fair_queue import FairQueue


@dataclass(frozen=True)
class JobLaneLimits:
    rows_beside_sync: int = 0  # job rows that may keep decoding while synchronous work is present
    join_per_iteration: int = 2  # job segments that may join (be prefilled) in one iteration
    sync_quiet_seconds: float = 0.5  # synchronous work counts as present this long after it was last seen


class JobLane:
    """The job segments' queue and the policy that keeps them behind synchronous work."""

    def __init__(self, limits: JobLaneLimits, queue: FairQueue[int]) -> None:
        self.limits = limits
        self.queue = queue
        self.running: list[int] = []  # job rows in the session, oldest first
        self._sync_seen = float("-inf")  # time.monotonic() when synchronous work was last present

    def sync_recent(self, sync_present: bool, now: float) -> bool:
        """Whether synchronous work is present or was, within the quiet period."""
        if sync_present:
            self._sync_seen = now
        return now - self._sync_seen < self.limits.sync_quiet_seconds

    def quiet_in(self, now: float) -> float:
        """Seconds until the quiet period after the last synchronous work is over (0: it is)."""
        return max(0.0, self._sync_seen + self.limits.sync_quiet_seconds - now)

    def cap(self, row_limit: int, sync_present: bool) -> int:
        """How many job rows may run now."""
        return min(row_limit, self.limits.rows_beside_sync) if sync_present else row_limit

    def take(self, free_rows: int, row_limit: int, sync_present: bool, max_audio: float) -> list[tuple[int, float]]:
        """Job segments that may join in this iteration: (key, enqueued_at)."""
        room = min(free_rows, self.cap(row_limit, sync_present) - len(self.running), self.limits.join_per_iteration)
        return self.queue.take(room, max_audio) if room > 0 else []

    def to_preempt(self, row_limit: int, sync_present: bool) -> list[int]:
        """The newest job rows beyond the cap (none without synchronous work)."""
        excess = len(self.running) - self.cap(row_limit, sync_present)
        return self.running[-excess:] if excess > 0 else []

    def joined(self, key: int) -> None:
        self.running.append(key)

    def left(self, keys) -> None:
        gone = set(keys)
        if gone:
            self.running = [key for key in self.running if key not in gone]
