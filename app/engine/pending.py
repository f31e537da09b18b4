"""One accepted segment while it waits, runs and is answered: its future, its streamed text and where it is.

A row that is requeued (an out-of-memory step, a job row preempted by synchronous work) decodes again from
the start; `produced` counts the text of this run and `delivered` what the listener already has, so no
character is streamed twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from app.engine.pipeline import RoutedJob, SegmentJob

DeltaListener = Callable[[str], None]
Lane = Literal["sync", "job"]


@dataclass
class Pending:
    key: int
    job: SegmentJob
    future: asyncio.Future
    request_id: str
    enqueued_at: float
    listener: DeltaListener | None = None
    routed: RoutedJob | None = None
    joined_at: float | None = None
    tokens: int = 0  # generated so far
    produced: int = 0  # characters of text decoded in this run (a requeued row decodes again from the start)
    delivered: int = 0  # characters already sent to the listener (never sent twice)
    lane: Lane = "sync"

    def stream(self, delta: str) -> None:
        """Send the part of a decoded delta that the listener has not had yet."""
        if not delta:
            return
        start = self.produced
        self.produced += len(delta)
        fresh = delta[max(0, self.delivered - start):]  # after a requeue: only what was not sent yet
        if fresh and self.listener is not None:
            self.delivered += len(fresh)
            self.listener(fresh)

    def restart(self) -> None:
        """Back to the queue: routed and decoded again from the start (what was streamed stays sent)."""
        self.routed, self.produced, self.tokens = None, 0, 0

    def answer(self, result: object) -> None:
        if not self.future.done():
            self.future.set_result(result)

    def fail(self, error: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(error)
