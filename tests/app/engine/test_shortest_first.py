"""Shortest work first (app/engine/shortest_first.py): the step-or-prefill decision, the order and budget of a
prefill, aging, the measured estimates; and the batcher under it with the scripted SteppingRecognizer."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from app.engine.batcher import Batcher, BatchLimits
from app.engine.fair_queue import FairQueue
from app.engine.guards import GuardConfig
from app.engine.pipeline import Pipeline, SegmentJob
from app.engine.shortest_first import ShortestFirst, WorkEstimate, should_prefill, take_next
from app.metrics import Metrics
from tests.app.engine.test_batcher import wait_until
from tests.fakes import FakeRouter, SteppingRecognizer, tone

# 1 s per prefill, 0.1 s per step, 10 tokens per audio second: a 1 s segment is 1 + 10 x 0.1 = 2 s of work.
FIXED = WorkEstimate.fixed(prefill_seconds=1.0, step_seconds=0.1, tokens_per_audio_second=10.0)


def queue_of(*requests: tuple[str, list[float], float]) -> FairQueue[str]:
    """requests: (id, segment seconds, enqueued at); values are '<id>/<index>'."""
    queue: FairQueue[str] = FairQueue()
    for request, seconds, at in requests:
        queue.push(request, [(f"{request}/{i}", s) for i, s in enumerate(seconds)], at)
    return queue


def test_a_running_row_about_to_end_steps_before_longer_waiting_work():
    # the running row has 2 steps (0.2 s) left; the waiting 1 s segment is 2 s of work
    assert not should_prefill(FIXED, best_queued=2.0, running_remaining=[0.2, 5.0])
    assert should_prefill(FIXED, best_queued=0.1, running_remaining=[0.2, 5.0])
    # nothing runs, or nothing waits: prefill (the batcher admits what there is)
    assert should_prefill(FIXED, best_queued=9.0, running_remaining=[])
    assert should_prefill(FIXED, best_queued=None, running_remaining=[0.2])


def test_long_running_rows_still_take_company_when_a_prefill_costs_them_less_than_they_have_left():
    # 3 rows x 1 s prefill = 3 s < 12 s left: batching pays; 13 rows x 1 s = 13 s > 12 s: it does not
    assert should_prefill(FIXED, best_queued=13.0, running_remaining=[12.0] * 3)
    assert not should_prefill(FIXED, best_queued=13.0, running_remaining=[12.0] * 13)


def test_a_prefill_takes_the_shortest_waiting_segments_up_to_its_budget():
    queue = queue_of(("long", [30.0, 30.0], 0.0), ("medium", [12.0], 0.0), ("short", [2.0], 0.0),
                     ("short2", [1.0], 0.0))
    taken = take_next(queue, ShortestFirst(aging=0.0, max_prefill_seconds=2.0), FIXED, running=[], free=8,
                      max_audio=240.0, now=0.0)
    assert [value for value, _ in taken] == ["short2/0", "short/0"]  # 2 s of prefill: two segments
    assert queue.segments == 3


def test_aging_lets_a_long_wait_go_before_fresh_short_work():
    # the 30 s segment is 1 + 300 x 0.1 = 31 s of work, a fresh 1 s clip 2 s: passed over for (31 - 2) / aging
    policy = ShortestFirst(aging=1.0, max_prefill_seconds=1.0)
    for now, first in ((28.0, "short/0"), (30.0, "long/0")):
        queue = queue_of(("long", [30.0], 0.0), ("short", [1.0], now))
        taken = take_next(queue, policy, FIXED, running=[], free=8, max_audio=240.0, now=now)
        assert [value for value, _ in taken] == [first]


def test_a_prefill_never_takes_more_than_the_free_rows_and_everything_when_it_all_fits():
    queue = queue_of(("a", [1.0, 1.0, 1.0], 0.0), ("b", [1.0], 0.0))
    assert take_next(queue, ShortestFirst(max_prefill_seconds=100.0), FIXED, running=[(30.0, 0)], free=0,
                     max_audio=240.0, now=0.0) == []
    taken = take_next(queue, ShortestFirst(max_prefill_seconds=100.0), FIXED, running=[], free=8,
                      max_audio=240.0, now=0.0)
    assert [value for value, _ in taken] == ["a/0", "b/0", "a/1", "a/2"]  # all of it, round-robin as before


def test_while_rows_run_segments_that_prefill_ahead_join_in_shortest_order_up_to_the_room_ahead():
    # the running row is 0.2 s from its end: inline, the waiting work would wait (first test above); ahead of
    # it, a prefill costs the row nothing, so the shortest join, as many as there is room ahead for
    queue = queue_of(("long", [30.0], 0.0), ("short", [1.0], 0.0), ("short2", [2.0], 0.0))
    policy = ShortestFirst(aging=0.0)
    taken = take_next(queue, policy, FIXED, running=[(1.0, 8)], free=8, max_audio=240.0, now=0.0, ahead=2)
    assert [value for value, _ in taken] == ["short/0", "short2/0"]
    assert take_next(queue, policy, FIXED, running=[(1.0, 8)], free=8, max_audio=240.0, now=0.0, ahead=0) is None
    assert take_next(queue, policy, FIXED, running=[(1.0, 8)], free=0, max_audio=240.0, now=0.0, ahead=2) is None
    assert queue.segments == 1


def test_segments_ahead_not_started_are_overtaken_by_shorter_aged_work_in_the_queue():
    from app.engine.shortest_first import overtaken

    queue = queue_of(("short", [1.0], 10.0))  # 2 s of work
    unstarted = [("long", 30.0, 10.0), ("medium", 1.5, 10.0), ("old", 30.0, 0.0)]  # 31, 2.5 and 31 s of work
    assert overtaken(queue, ShortestFirst(aging=0.0), FIXED, unstarted, now=10.0) == ["long", "medium", "old"]
    # aged: 'old' waited 10 s longer, so at aging 3 its 31 s count as 1 s: it keeps its place
    assert overtaken(queue, ShortestFirst(aging=3.0), FIXED, unstarted, now=10.0) == ["long", "medium"]
    assert overtaken(queue_of(), ShortestFirst(), FIXED, unstarted, now=10.0) == []


def test_estimates_start_unmeasured_and_follow_what_the_engine_measures():
    estimate = WorkEstimate()
    assert estimate.prefill_segments(2.0, free=16) == 16  # no prefill measured yet: no budget guessed
    estimate.observe_iteration(joined=4, prefill_seconds=2.0, step_seconds=0.05)
    assert (estimate.prefill_seconds, estimate.step_seconds) == (0.5, 0.05)  # the first measurement replaces
    assert estimate.prefill_segments(2.0, free=16) == 4 and estimate.prefill_segments(2.0, free=2) == 2
    estimate.observe_iteration(joined=1, prefill_seconds=1.5, step_seconds=0.0)
    assert estimate.prefill_seconds == pytest.approx(0.8 * 0.5 + 0.2 * 1.5)
    estimate.observe_finished(audio_seconds=10.0, tokens=30)
    estimate.observe_finished(audio_seconds=0.5, tokens=40)  # a blip: no rate from it
    assert estimate.tokens_per_audio_second == 3.0
    assert estimate.remaining_work(10.0, tokens=29) == pytest.approx(1 * 0.05)
    assert estimate.remaining_work(10.0, tokens=45) == pytest.approx(1 * 0.05)  # past its estimate: one step


def test_the_batcher_runs_a_short_request_to_its_end_before_longer_work_joins():
    async def scenario(policy: ShortestFirst) -> tuple[list[str], SteppingRecognizer]:
        recognizer = SteppingRecognizer()
        pipeline = Pipeline(recognizer, FakeRouter(), guards=GuardConfig(enabled=False))
        limits = BatchLimits(max_items=8, max_wait_seconds=0.0, shortest_first=policy)
        batcher = Batcher(pipeline, limits, Metrics(), estimate=WorkEstimate.fixed(1.0, 0.1, 10.0))
        order: list[str] = []
        futures = [batcher.submit(f"long{i}", [SegmentJob(audio=tone(12.0))])[0] for i in range(3)]
        futures.append(batcher.submit("short", [SegmentJob(audio=tone(1.0))])[0])
        for name, future in zip(["long0", "long1", "long2", "short"], futures):
            future.add_done_callback(lambda _, name=name: order.append(name))
        batcher.start()  # everything waits before the first iteration
        await asyncio.gather(*futures)
        await wait_until(lambda: not batcher.busy)
        await batcher.stop()
        return order, recognizer

    order, recognizer = asyncio.run(scenario(ShortestFirst(aging=0.0, max_prefill_seconds=1.0)))
    assert order[0] == "short"
    # the short clip joined alone and decoded to its end (10 characters) before a long one joined
    assert [round(item.duration) for item in recognizer.joins[0]] == [1]
    alone = len(list(itertools.takewhile(lambda keys: len(keys) == 1, recognizer.steps)))
    assert alone >= 9, recognizer.steps
    order, recognizer = asyncio.run(scenario(ShortestFirst(enabled=False)))
    assert len(recognizer.steps[0]) == 4  # off: all four joined before the first step
