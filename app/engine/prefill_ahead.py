"""Prefill ahead: a joining segment's audio encoder runs on a helper thread while the running rows step.

Why: on a CPU the encoder of a 30 s Whisper window is compute-bound, while a decode step is bound by memory
and per-call overhead. Run one after the other, every prefill stops the running rows (Whisper base, 2-core
AVX2 EPYC: ~0.55 s per encoder on both cores), so an engine either makes running rows wait for newcomers or
makes newcomers wait for the running rows. Side by side on one core each they hardly touch (measured, same
machine, int8 Whisper base): the encoder took 0.98 s alone on one thread and 0.96-1.03 s beside decode steps
on the other thread, and steps of 1, 4 and 8 rows took 15.2, 27.8 and 47.1 ms beside it, as alone on one
thread.

So while rows run, the segments that join get their encoder states (models.recognition.PreparesAhead) on
the helper thread, with one CPU thread, and the inference thread steps with one CPU thread meanwhile
(`threads_for`). Once a segment's states are ready, its join (the decoder's prompt passes) runs on the
inference thread at the next iteration. With nothing running and nothing ahead, a join runs inline on every
CPU thread as before, so a lone request's latency is unchanged. With nothing to step, the inference thread
takes a prepared-ahead segment that has not started yet and encodes it itself, so both cores keep working.

Segments ahead are not fixed in place: when shorter work arrives, the ones whose encoder has not started go
back to the queue (`hand_back`; app.engine.shortest_first.overtaken), so a short clip waits for at most the
encoders already running. Every submitted segment comes back exactly once from `ready()` or
`take_unstarted()`, or is withdrawn by `hand_back()` or `drop()` (its request was cancelled); `close()` abandons
what has not started.
"""

from __future__ import annotations

import concurrent.futures
import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from app.engine.inference_thread import pin_torch_threads


class Preparer(Protocol):
    def prepare(self, items: list[Any]) -> list[Any]: ...


@dataclass
class Prepared:
    """One segment's prepared state, or the exception that preparing it raised."""

    key: int
    job: Any  # the routed job (app.engine.pipeline.RoutedJob)
    state: Any = None
    error: Exception | None = None
    seconds: float = 0.0  # time the preparation took where it ran


def _timed_prepare(session: Preparer, item: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    state = session.prepare([item])[0]
    return state, time.perf_counter() - started


def _outcome(key: int, job: Any, compute: Callable[[], tuple[Any, float]]) -> Prepared:
    """`compute()`'s (state, seconds) as a Prepared, or the exception it raised (this segment fails alone)."""
    try:
        state, seconds = compute()
    except Exception as exc:  # noqa: BLE001 - the engine answers this segment with the error
        return Prepared(key, job, error=exc)
    return Prepared(key, job, state, seconds=seconds)


class PrefillAhead:
    """The helper thread and the segments submitted to it, in submission order."""

    def __init__(self, session: Preparer, capacity: int) -> None:
        self.session = session
        self.capacity = capacity  # segments ahead at once (submitted, not yet joined)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="prefill-ahead", initializer=pin_torch_threads, initargs=(1,))
        self._waiting: dict[int, tuple[Any, concurrent.futures.Future]] = {}

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    def keys(self) -> list[int]:
        return list(self._waiting)

    def unstarted(self) -> list[int]:
        """Keys whose preparation has not started, in submission order (the helper may start one meanwhile)."""
        return [key for key, (_, future) in self._waiting.items() if not future.running() and not future.done()]

    def hand_back(self, keys: Iterable[int]) -> list[int]:
        """Withdraw these segments if their preparation has not started (they go back to the queue: shorter
        work arrived); returns the keys withdrawn."""
        withdrawn = []
        for key in keys:
            entry = self._waiting.get(key)
            if entry is not None and entry[1].cancel():
                del self._waiting[key]
                withdrawn.append(key)
        return withdrawn

    def submit(self, entries: Iterable[tuple[int, Any]]) -> None:
        """Start preparing each (key, routed job), in order."""
        for key, job in entries:
            self._waiting[key] = (job, self._executor.submit(_timed_prepare, self.session, job.item))

    def ready(self) -> list[Prepared]:
        """The segments whose preparation has ended (states or errors), in submission order."""
        done = [key for key, (_, future) in self._waiting.items() if future.done()]
        return [self._result(key) for key in done]

    def take_unstarted(self) -> Prepared | None:
        """The oldest segment the helper has not started, prepared here on the calling thread instead."""
        for key, (job, future) in list(self._waiting.items()):
            if future.cancel():
                del self._waiting[key]
                return _outcome(key, job, functools.partial(_timed_prepare, self.session, job.item))
        return None

    def wait(self, timeout: float) -> None:
        """Block until some preparation ends (or `timeout` seconds)."""
        futures = [future for _, future in self._waiting.values()]
        if futures:
            concurrent.futures.wait(futures, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED)

    def drop(self, keys: Iterable[int]) -> None:
        """Forget these segments (cancelled requests): not started ones never run, running ones are discarded."""
        for key in keys:
            if (entry := self._waiting.pop(key, None)) is not None:
                entry[1].cancel()

    def close(self) -> None:
        self._waiting.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _result(self, key: int) -> Prepared:
        job, future = self._waiting.pop(key)
        return _outcome(key, job, future.result)


def prefill_ahead_for(session: object, capacity: int) -> PrefillAhead | None:
    """A PrefillAhead for `session` when it prepares ahead (models.recognition.PreparesAhead) and `capacity`
    allows any; else None (every prefill runs inline)."""
    if capacity <= 0 or not getattr(session, "prepares_ahead", False):
        return None
    return PrefillAhead(session, capacity)


def threads_for(ahead: PrefillAhead | None, threads: int) -> int:
    """The inference thread's CPU threads now: one while the helper may be encoding (the cores are shared
    one each), all of them otherwise."""
    return 1 if ahead is not None and ahead.in_flight else threads
