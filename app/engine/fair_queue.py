"""The bounded queue of segments waiting to run: one lane per request, served round-robin.

Taking segments goes one lane at a time, one segment per lane per round, so a short clip that arrives
behind a long file rides in the very next group that has room; a lane that was served moves to the back.
The queue counts its segments and audio seconds (admission control and the autoscaling signal).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    value: T
    seconds: float
    enqueued_at: float


@dataclass
class FairQueue(Generic[T]):
    on_change: Callable[[float, int], None] = lambda audio, segments: None  # (queued audio s, segments)
    _lanes: collections.OrderedDict[str, collections.deque[_Entry[T]]] = field(
        default_factory=collections.OrderedDict)
    audio: float = 0.0
    segments: int = 0

    def push(self, lane: str, values: Iterable[tuple[T, float]], now: float) -> None:
        queue = self._lanes.setdefault(lane, collections.deque())
        for value, seconds in values:
            queue.append(_Entry(value, seconds, now))
            self._account(seconds, 1)

    def push_front(self, lane: str, value: T, seconds: float, enqueued_at: float) -> None:
        """Back to the head of its lane, and the lane to the front: work that was taken and must run again."""
        queue = self._lanes.setdefault(lane, collections.deque())
        queue.appendleft(_Entry(value, seconds, enqueued_at))
        self._lanes.move_to_end(lane, last=False)
        self._account(seconds, 1)

    def first_enqueued_at(self) -> float | None:
        return min((lane[0].enqueued_at for lane in self._lanes.values()), default=None)

    def take(self, max_segments: int, max_audio: float) -> list[tuple[T, float]]:
        """Round-robin: one segment from each lane in turn, until `max_segments` or `max_audio` seconds
        (the first segment is taken whatever its length). Returns (value, seconds waited)."""
        return self._take(max_segments, max_audio, lambda: next(iter(self._lanes)), rotate=True)

    def lowest(self, key: Callable[[Sequence[_Entry[T]]], float]) -> float | None:
        """The smallest `key(lane's entries)` over the lanes; None when empty."""
        return min((key(lane) for lane in self._lanes.values()), default=None)

    def take_lowest(self, max_segments: int, max_audio: float,
                    key: Callable[[Sequence[_Entry[T]]], float]) -> list[tuple[T, float]]:
        """Like `take`, but each segment comes from the lane with the smallest `key(entries)` at that moment
        (app.engine.shortest_first: the request with the least work left, aged)."""
        return self._take(max_segments, max_audio, lambda: min(self._lanes, key=lambda name: key(self._lanes[name])),
                          rotate=False)

    def _take(self, max_segments: int, max_audio: float, pick: Callable[[], str],
              *, rotate: bool) -> list[tuple[T, float]]:
        """Segments from the lanes `pick()` names, one at a time; `rotate`: a lane that still holds
        segments goes to the back."""
        taken: list[_Entry[T]] = []
        audio = 0.0
        while self._lanes and len(taken) < max_segments:
            lane_id = pick()
            lane = self._lanes[lane_id]
            if taken and audio + lane[0].seconds > max_audio:
                break
            entry = lane.popleft()
            taken.append(entry)
            audio += entry.seconds
            if not lane:
                del self._lanes[lane_id]
            elif rotate:
                self._lanes.move_to_end(lane_id)
        self._account(-audio, -len(taken))
        return [(entry.value, entry.enqueued_at) for entry in taken]

    def drop(self, lane: str) -> list[T]:
        """Remove a lane (its request is gone); returns what it held."""
        entries = self._lanes.pop(lane, None) or collections.deque()
        self._account(-sum(e.seconds for e in entries), -len(entries))
        return [entry.value for entry in entries]

    def drain(self) -> list[T]:
        values = [entry.value for lane in self._lanes.values() for entry in lane]
        self._lanes.clear()
        self._account(-self.audio, -self.segments)
        return values

    def _account(self, audio: float, segments: int) -> None:
        self.audio = max(0.0, self.audio + audio)
        self.segments += segments
        if self.segments == 0:
            self.audio = 0.0  # no float residue once empty
        self.on_change(self.audio, self.segments)


class Throughput:
    """Exponentially weighted audio seconds finished per second of inference time (for Retry-After: how
    long the queued audio will take)."""

    def __init__(self, alpha: float = 0.2, initial: float = 1.0) -> None:
        self.alpha = alpha
        self._rate = initial
        self._busy = 0.0  # inference time since the last finished segment

    def add(self, audio_seconds: float, elapsed: float) -> None:
        self._busy += elapsed
        if audio_seconds > 0 and self._busy > 0:
            self._rate = (1 - self.alpha) * self._rate + self.alpha * (audio_seconds / self._busy)
            self._busy = 0.0

    def rate(self) -> float:
        return max(self._rate, 1e-3)
