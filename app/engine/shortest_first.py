"""What the continuous engine does next while rows run and segments wait: the work that ends soonest first.

Why: a decode step serves every running row at once, a prefill only the segments that join. Prefilling all
that waits before the next step makes a burst of requests finish late together: 16 requests arriving at once
on a 2-core CPU waited for 16 Whisper base prefills (~9 s) before their first step, the 2 s clips included.
Serving the shortest remaining work first (SRPT) lets short requests out early; every segment's work is still
done once, and rows still decode together.

The estimates are measured as the service runs (moving averages, `WorkEstimate`): seconds of prefill per
segment, seconds per decode step, and tokens decoded per second of audio.
- A waiting request's work is that of its next segment: a prefill plus its expected steps.
- A running row's remaining work: its expected steps not yet taken (at least one) x the step time.
- The next iteration prefills when the smallest waiting work is below the smallest remaining work of the
  running rows, or when the running rows lose less to a prefill than they have left to run (rows x prefill <
  the smallest remaining work: long rows keep batching, and on an accelerator, where a prefill is short,
  nearly everything joins at once). Otherwise it steps.
- A prefill takes the waiting requests in order of their work less `aging` x the seconds they have waited,
  up to `max_prefill_seconds` of expected prefill. So a request is passed over for at most (its segment's
  work - the smallest work) / aging seconds: at the default 0.1, ~55 s for a 30 s segment behind a stream of
  2 s clips on a 2-core CPU with Whisper base (6.5 s against 1 s of work), once for the whole request (its
  segments were queued together and age together). Measured (bench, AVX2-limited, Whisper base, 16 clients):
  the median latency fell from 13.8 / 12.1 s to 6.2 / 5.9 s at the same throughput; aging 0.25 gave 7.5-7.9 s.
- Until a prefill has been measured, everything that waits joins (no guess at a model's cost).
- While rows run and encoders can run ahead on a helper thread (app/engine/prefill_ahead.py), a prefill no
  longer stops the running rows: up to `ahead` segments join, in the same aged order, without weighing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.engine.fair_queue import FairQueue


@dataclass(frozen=True)
class ShortestFirst:
    enabled: bool = True
    aging: float = 0.1  # seconds of expected work forgiven per second a request has waited
    max_prefill_seconds: float = 2.0  # expected prefill joining in one iteration (at least one segment)


@dataclass
class WorkEstimate:
    """Moving averages of what the model costs here; starting values until the first measurements."""

    prefill_seconds: float = 0.5  # per segment
    step_seconds: float = 0.03
    tokens_per_audio_second: float = 4.0
    alpha: float = 0.2
    _measured: set[str] = field(default_factory=set, repr=False)  # the first measurement replaces the start

    @classmethod
    def fixed(cls, prefill_seconds: float, step_seconds: float, tokens_per_audio_second: float) -> WorkEstimate:
        """Estimates that measurements do not move (tests, and what-if runs)."""
        estimate = cls(prefill_seconds, step_seconds, tokens_per_audio_second, alpha=0.0)
        estimate._measured.update({"prefill_seconds", "step_seconds", "tokens_per_audio_second"})
        return estimate

    def _update(self, name: str, value: float) -> None:
        old = getattr(self, name)
        setattr(self, name, (1 - self.alpha) * old + self.alpha * value if name in self._measured else value)
        self._measured.add(name)

    def observe_iteration(self, joined: int, prefill_seconds: float, step_seconds: float) -> None:
        if joined and prefill_seconds > 0:
            self._update("prefill_seconds", prefill_seconds / joined)
        if step_seconds > 0:
            self._update("step_seconds", step_seconds)

    def observe_finished(self, audio_seconds: float, tokens: int) -> None:
        if audio_seconds >= 1.0 and tokens > 0:  # a blip's tokens say little about a rate
            self._update("tokens_per_audio_second", tokens / audio_seconds)

    def steps(self, audio_seconds: float) -> float:
        return max(1.0, self.tokens_per_audio_second * audio_seconds)

    def segment_work(self, audio_seconds: float) -> float:
        """A waiting segment's work: its prefill and its expected steps."""
        return self.prefill_seconds + self.steps(audio_seconds) * self.step_seconds

    def remaining_work(self, audio_seconds: float, tokens: int) -> float:
        return max(1.0, self.steps(audio_seconds) - tokens) * self.step_seconds

    def prefill_segments(self, budget_seconds: float, free: int) -> int:
        """How many of `free` row slots to fill in `budget_seconds` of expected prefill (at least one; all
        until a prefill has been measured: no guess at a model's cost)."""
        if "prefill_seconds" not in self._measured or free <= 0:
            return max(free, 0)
        return max(1, min(free, int(budget_seconds / max(self.prefill_seconds, 1e-6))))


def should_prefill(estimate: WorkEstimate, best_queued: float | None, running_remaining: Sequence[float]) -> bool:
    """True: the next iteration prefills (queued work joins); False: it steps the running rows."""
    if best_queued is None or not running_remaining:
        return True
    shortest = min(running_remaining)
    if best_queued < shortest:
        return True
    return len(running_remaining) * estimate.prefill_seconds < shortest


def aged_work(policy: ShortestFirst, estimate: WorkEstimate, seconds: float, enqueued_at: float, now: float) -> float:
    """A waiting segment's work less its aging credit: the order among waiting requests."""
    return estimate.segment_work(seconds) - policy.aging * (now - enqueued_at)


def overtaken(queue: FairQueue, policy: ShortestFirst, estimate: WorkEstimate,
              unstarted: Sequence[tuple[Any, float, float]], now: float) -> list[Any]:
    """Of the segments admitted ahead whose encoder has not started ((key, seconds, enqueued_at)), those that a
    queued segment should go before: more aged work than the best queued one. They go back to the queue, so
    a short clip is not kept waiting behind long segments ahead (app/engine/prefill_ahead.py)."""
    best = queue.lowest(lambda entries: aged_work(policy, estimate, entries[0].seconds, entries[0].enqueued_at, now))
    if best is None:
        return []
    return [key for key, seconds, enqueued_at in unstarted
            if aged_work(policy, estimate, seconds, enqueued_at, now) > best]


def take_next(queue: FairQueue, policy: ShortestFirst, estimate: WorkEstimate, running: Sequence[tuple[float, int]],
              free: int, max_audio: float, now: float, ahead: int | None = None) -> list[tuple[Any, float]] | None:
    """The segments that join now, or None: the running rows (audio seconds, tokens so far) step first.
    `ahead`: how many more segments may prefill ahead now (None: prefills run inline)."""

    def work(entries: Sequence[Any]) -> float:  # the request's next segment
        return estimate.segment_work(entries[0].seconds)

    def aged(entries: Sequence[Any]) -> float:
        return aged_work(policy, estimate, entries[0].seconds, entries[0].enqueued_at, now)

    if ahead is not None and running:
        count = min(ahead, free)
        return queue.take_lowest(count, max_audio, aged) if count > 0 else None
    remaining = [estimate.remaining_work(seconds, tokens) for seconds, tokens in running]
    if not should_prefill(estimate, queue.lowest(work), remaining):
        return None
    count = estimate.prefill_segments(policy.max_prefill_seconds, free)
    if count >= queue.segments:  # all that waits joins: in round-robin order, as without the policy
        return queue.take(count, max_audio)
    return queue.take_lowest(count, max_audio, aged)
