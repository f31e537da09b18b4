"""The engine's second lane: segments of background jobs, always behind synchronous segments.

- Synchronous segments are admitted first; job segments take only the rows left, at most
  `join_per_iteration` of them per iteration (so a job's prefill between two steps stays short).
- While synchronous work is queued or running, job rows are held to `rows_beside_sync`; job rows beyond
  that are preempted: they leave the running rows and go back to the head of their job's queue (their
  decoding so far is redone later), the same way rows leave on an out-of-memory step. A short synchronous
  clip then decodes beside at most that many job rows, never behind a job's backlog.
- Job audio is not counted for the synchronous admission limit (429), but is in the autoscaling signal.
The job runner (app/jobs/runner.py) keeps only a bounded window of segments in this lane.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.engine.fair_queue import FairQueue


@dataclass(frozen=True)
class JobLaneLimits:
    rows_beside_sync: int = 2  # job rows that may keep decoding while synchronous work is present
    join_per_iteration: int = 2  # job segments that may join (be prefilled) in one iteration


class JobLane:
    """The job segments' queue and the policy that keeps them behind synchronous work."""

    def __init__(self, limits: JobLaneLimits, queue: FairQueue[int]) -> None:
        self.limits = limits
        self.queue = queue
        self.running: list[int] = []  # job rows in the session, oldest first

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
