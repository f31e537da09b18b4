"""The inference worker's side of the batcher: one iteration = drop cancelled rows, route and prefill the
admitted segments (they join the running rows), then one decode step for every running row. While rows run,
admitted segments may instead have their encoders run ahead on a helper thread and join at a later iteration
(app/engine/prefill_ahead.py).

Runs only on the inference thread; the batcher (app.engine.batcher) calls `iterate` once per loop and gets back
what happened. Failures are contained to the rows they concern:
- a join that raises is retried row by row (CUDA out-of-memory: in halves), so one bad segment fails alone;
  a single segment that runs out of memory beside running rows goes back to the queue instead;
- a decode step that runs out of memory sends the newest running rows back to the queue and steps again;
- any other step failure fails the rows that were running (a step computes them together) and resets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.engine.inference_thread import pin_torch_threads
from app.engine.pipeline import Pipeline, RoutedJob, SegmentJob, SegmentResult
from app.engine.prefill_ahead import PrefillAhead, Prepared, threads_for
from app.metrics import Metrics
from models.recognition import DecodeSession, RowUpdate

log = logging.getLogger("app.engine.iteration")


@dataclass
class Iteration:
    """What one iteration did, for the batcher to deliver and record."""

    routed: dict[int, RoutedJob] = field(default_factory=dict)  # decisions of the segments that joined
    updates: list[RowUpdate] = field(default_factory=list)  # deltas and finished rows (keys: segment ids)
    failed: dict[int, Exception] = field(default_factory=dict)  # segments that failed (join or step)
    requeue: list[int] = field(default_factory=list)  # segments to queue again (out of memory)
    joins: list[list[int]] = field(default_factory=list)  # the prefill groups, by segment id
    inline_joined: int = 0  # segments whose whole prefill ran in this iteration (what WorkEstimate learns from)
    inline_prefill_seconds: float = 0.0
    ahead_seconds: list[float] = field(default_factory=list)  # encoders that ran ahead, each where it ran
    # Finished rows that asked for words: their results, guards applied and words timed (one aligner call).
    finished: dict[int, SegmentResult] = field(default_factory=dict)
    router_seconds: float = 0.0
    prefill_seconds: float = 0.0
    step_seconds: float = 0.0
    align_seconds: float = 0.0
    running: int = 0  # rows running after the iteration


def is_out_of_memory(exc: BaseException) -> bool:
    import torch  # imported here: the service imports this module without needing torch at import time

    return isinstance(exc, torch.OutOfMemoryError)


def empty_device_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Engine:
    """Owns the decode session; lives on the inference thread."""

    def __init__(self, pipeline: Pipeline, session: DecodeSession, *, group_by_length: bool = True,
                 length_ratio: float = 2.0, ahead: PrefillAhead | None = None, threads: int = 1) -> None:
        self.pipeline = pipeline
        self.session = session
        self.group_by_length = group_by_length  # continuous mode: prefill groups of similar length
        self.length_ratio = length_ratio
        self.ahead = ahead  # None: every prefill runs inline
        self.threads = threads  # the inference thread's CPU threads when nothing runs ahead
        self._threads_now = threads
        self._join_order: list[int] = []  # running segment ids, oldest first (who is evicted first: newest)
        self._words: dict[int, RoutedJob] = {}  # running rows that asked for word times

    def iterate(self, cancel: Sequence[int], admit: Sequence[tuple[int, SegmentJob]], step: bool = True) -> Iteration:
        it = Iteration()
        if cancel:
            self.session.cancel(cancel)
            if self.ahead is not None:
                self.ahead.drop(cancel)
            self._forget(cancel)
        if admit:
            self._admit(admit, it)
        if self.ahead is not None:
            self._join_prepared(self.ahead.ready(), it)
            if not self.session.running and not it.joins:
                self._help_ahead(it)
        # An inline prefill delivers its rows' first tokens before the next step; one that ran ahead does not
        # hold the running rows up, so they step in the same iteration.
        if (step or not it.inline_joined) and self.session.running:
            self._use_threads(threads_for(self.ahead, self.threads))
            self._step(it)
        self._align(it)
        self._forget(update.key for update in it.updates if update.result is not None)
        it.running = self.session.running
        return it

    def reset(self) -> None:
        """After the engine itself failed: no running rows, nothing ahead."""
        self.session.reset()
        if self.ahead is not None:
            self.ahead.drop(list(self.ahead.keys()))

    def _use_threads(self, count: int) -> None:
        if count != self._threads_now:
            pin_torch_threads(count)
            self._threads_now = count

    # --- joining -------------------------------------------------------------------------------------
    def _admit(self, admit: Sequence[tuple[int, SegmentJob | RoutedJob]], it: Iteration) -> None:
        """`admit`: new segments, and segments that were routed before (handed back from ahead: not again)."""
        fresh = [(key, job) for key, job in admit if not isinstance(job, RoutedJob)]
        decided = {key: job for key, job in admit if isinstance(job, RoutedJob)}
        if fresh:
            started = time.perf_counter()
            try:
                decided.update(zip([key for key, _ in fresh], self.pipeline.route([job for _, job in fresh])))
            except Exception:  # noqa: BLE001 - one segment's decision failed (its language, say): each alone
                decided.update(zip([key for key, _ in fresh], self._route_one_by_one(fresh, it)))
            it.router_seconds = time.perf_counter() - started
        entries = [(key, decided[key]) for key, _ in admit if decided[key] is not None]
        it.routed.update(entries)
        if self.ahead is not None and (self.session.running or self.ahead.in_flight):
            self.ahead.submit(entries)  # joins at a later iteration, once its encoder has run
            return
        self._use_threads(self.threads)
        started = time.perf_counter()
        for group in self._groups(entries):
            self._join(group, it)
        it.prefill_seconds = it.inline_prefill_seconds = time.perf_counter() - started
        it.inline_joined = sum(len(group) for group in it.joins)

    def _route_one_by_one(self, admit: Sequence[tuple[int, SegmentJob]], it: Iteration) -> list[RoutedJob | None]:
        routed: list[RoutedJob | None] = []
        for key, job in admit:
            try:
                routed.append(self.pipeline.route([job])[0])
            except Exception as exc:  # noqa: BLE001 - this segment fails alone, answered by the batcher
                it.failed[key] = exc
                routed.append(None)
        return routed

    def _groups(self, entries: list[tuple[int, RoutedJob]]) -> list[list[tuple[int, RoutedJob]]]:
        """Prefill groups: one (static mode), or runs of similar duration so padding stays small; each group
        keeps the admission (round-robin) order."""
        if not self.group_by_length or len(entries) < 2:
            return [entries] if entries else []
        groups: list[list[int]] = []  # entry indices; a group starts where a duration exceeds ratio x its floor
        floor = 0.0
        for index in sorted(range(len(entries)), key=lambda index: entries[index][1].item.duration):
            duration = entries[index][1].item.duration
            if not groups or duration > self.length_ratio * max(floor, 1.0):
                floor = duration
                groups.append([])
            groups[-1].append(index)
        return [[entries[i] for i in sorted(group)] for group in groups]

    def _join_prepared(self, prepared: list[Prepared], it: Iteration) -> None:
        """Join the segments whose encoders ran ahead (failed ones fail alone)."""
        states = {}
        for entry in prepared:
            it.routed[entry.key] = entry.job
            it.ahead_seconds.append(entry.seconds)
            if entry.error is not None:
                log.error("prefill ahead failed for one segment", exc_info=entry.error)
                it.failed[entry.key] = entry.error
            else:
                states[entry.key] = entry.state
        if not states:
            return
        started = time.perf_counter()
        for group in self._groups([(entry.key, entry.job) for entry in prepared if entry.key in states]):
            self._join(group, it, states)
        it.prefill_seconds += time.perf_counter() - started

    def _help_ahead(self, it: Iteration) -> None:
        """Nothing to step and nothing joined: encode a segment that waits ahead here (both cores work), or wait
        for the helper's; then join what is ready."""
        self._use_threads(1)  # the helper keeps its core
        taken = self.ahead.take_unstarted()
        if taken is None:
            self.ahead.wait(timeout=0.1)  # then back to the batcher: new arrivals can be taken here
        self._join_prepared(([taken] if taken is not None else []) + self.ahead.ready(), it)

    def _join(self, group: list[tuple[int, RoutedJob]], it: Iteration, states: dict[int, object] | None = None) -> None:
        try:
            entries = [(key, routed.item) for key, routed in group]
            if states is None:
                it.updates += self.session.join(entries)
            else:
                it.updates += self.session.join(entries, [states[key] for key, _ in group])
        except Exception as exc:  # noqa: BLE001 - contained to this group's rows (logged below)
            self._join_failed(group, exc, it, states)
            return
        it.joins.append([key for key, _ in group])
        self._join_order += [key for key, _ in group]
        self._words.update((key, routed) for key, routed in group if routed.item.words)

    def _join_failed(self, group: list[tuple[int, RoutedJob]], exc: Exception, it: Iteration,
                     states: dict[int, object] | None = None) -> None:
        if is_out_of_memory(exc):
            empty_device_cache()
            if len(group) > 1:
                log.warning("out of memory prefilling %d segments; retrying in halves", len(group))
                half = len(group) // 2
                self._join(group[:half], it, states)
                self._join(group[half:], it, states)
            elif self.session.running:  # memory is held by running rows: try again when some have finished
                it.requeue.append(group[0][0])
            else:
                it.failed[group[0][0]] = exc
        elif len(group) > 1:  # find the segment at fault: each joins alone
            for entry in group:
                self._join([entry], it, states)
        else:
            log.error("prefill failed for one segment", exc_info=exc)
            it.failed[group[0][0]] = exc

    # --- stepping ------------------------------------------------------------------------------------
    def _step(self, it: Iteration) -> None:
        started = time.perf_counter()
        while self.session.running:
            try:
                it.updates += self.session.step()
                break
            except Exception as exc:  # noqa: BLE001 - contained to the running rows (logged below)
                if not self._step_failed(exc, it):
                    break
        it.step_seconds = time.perf_counter() - started

    def _step_failed(self, exc: Exception, it: Iteration) -> bool:
        """Contain a failed step; True if it is worth stepping again."""
        running = list(self._join_order)
        if is_out_of_memory(exc) and len(running) > 1:
            empty_device_cache()
            evicted = running[len(running) // 2:]  # the newest half goes back to the queue
            log.warning("out of memory in a decode step of %d rows; requeueing %d", len(running), len(evicted))
            self.session.cancel(evicted)
            self._forget(evicted)
            it.requeue += evicted
            return True
        log.error("decode step failed for %d rows", len(running), exc_info=exc)
        self.session.reset()
        self._forget(running)
        it.failed.update(dict.fromkeys(running, exc))
        return False

    def _forget(self, keys) -> None:
        gone = set(keys)
        if gone:
            self._join_order = [key for key in self._join_order if key not in gone]
            for key in gone:
                self._words.pop(key, None)

    # --- word times ----------------------------------------------------------------------------------
    def _align(self, it: Iteration) -> None:
        """Rows that ended in this iteration and asked for words: guards, then one aligner call for all of
        them (the aligner splits them by route); results go out with their words. A failed call is retried
        row by row, so one bad segment fails alone."""
        finished = [(update.key, self._words[update.key], update.result) for update in it.updates
                    if update.result is not None and update.key in self._words and update.key not in it.failed]
        if not finished:
            return
        started = time.perf_counter()
        entries = [(key, routed, rec, self.pipeline.finish(routed, rec)) for key, routed, rec in finished]
        try:
            results = self.pipeline.align([(routed, rec, result) for _, routed, rec, result in entries])
            it.finished.update((key, result) for (key, *_), result in zip(entries, results))
        except Exception:  # noqa: BLE001 - contained below, row by row
            for key, routed, rec, result in entries:
                try:
                    it.finished[key] = self.pipeline.align([(routed, rec, result)])[0]
                except Exception as exc:
                    log.error("word alignment failed for one segment", exc_info=exc)
                    it.failed[key] = exc
        it.align_seconds = time.perf_counter() - started


def record_iteration(metrics: Metrics, it: Iteration, elapsed: float) -> None:
    """The engine metrics of one iteration: time, router, prefill groups and the decode step."""
    metrics.inference.observe(elapsed)
    if it.router_seconds:  # segments were routed in this iteration (not only joined after running ahead)
        metrics.router_time.observe(it.router_seconds)
    for seconds in it.ahead_seconds:
        metrics.encoder_ahead.observe(seconds)
    for group in it.joins:
        routes = {it.routed[key].route for key in group}
        metrics.batch_size.observe(len(group))
        metrics.batch_audio.observe(sum(it.routed[key].item.duration for key in group))
        metrics.batches.labels(mix=routes.pop() if len(routes) == 1 else "mixed").inc()
    if it.joins:
        metrics.prefill.observe(it.prefill_seconds)
    if it.step_seconds:
        metrics.decode_step.observe(it.step_seconds)
    if it.finished:
        metrics.alignment.observe(it.align_seconds)
        metrics.aligned_segments.inc(len(it.finished))
