"""Prefill ahead (app/engine/prefill_ahead.py): while rows step, a joining segment is prepared on the helper
thread and joins with what was prepared; with nothing to step the inference thread prepares one itself;
cancelled, failing and shut-down segments are each answered once.

The session is the scripted SteppingRecognizer (tests/fakes.py) with `prepares_ahead`: steps are released
one by one (`pace`) and preparations held by `prepare_gate`, so every ordering below is forced.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.engine.batcher import Batcher, BatchLimits
from app.engine.guards import GuardConfig
from app.engine.pipeline import Pipeline, SegmentJob
from app.engine.prefill_ahead import PrefillAhead, threads_for
from app.errors import InferenceFailed, NotReady
from app.metrics import Metrics
from tests.app.engine.test_batcher import sample, wait_until
from tests.fakes import FakeRecognizer, FakeRouter, SteppingRecognizer, tone

LONG = 12.0  # "base 12.0s" + 12 dots: 22 steps


def make(recognizer: SteppingRecognizer, capacity: int = 2, ahead_on: bool | None = True, wait: float = 0.0):
    metrics = Metrics()
    pipeline = Pipeline(recognizer, FakeRouter(), guards=GuardConfig(enabled=False))  # fake texts repeat dots
    limits = BatchLimits(max_items=8, max_wait_seconds=wait, prefill_ahead=capacity)
    return Batcher(pipeline, limits, metrics, threads=2, ahead_on=ahead_on), metrics


def paced(**kwargs) -> tuple[SteppingRecognizer, threading.Semaphore, threading.Event]:
    pace, gate = threading.Semaphore(0), threading.Event()
    return SteppingRecognizer(pace=pace, prepare_gate=gate, prepares_ahead=True, **kwargs), pace, gate


async def steps_taken(recognizer: SteppingRecognizer, pace: threading.Semaphore, count: int) -> None:
    """Release `count` steps and wait until they ran."""
    target = len(recognizer.steps) + count
    pace.release(count)
    await wait_until(lambda: len(recognizer.steps) >= target)


async def short_held_ahead_of_a_running_long_row(recognizer: SteppingRecognizer, pace: threading.Semaphore):
    """A long row running, then a 1 s clip that arrives and is held at the prepare gate on the helper."""
    batcher, metrics = make(recognizer)
    batcher.start()
    long = batcher.submit("long", [SegmentJob(audio=tone(LONG))])[0]
    await steps_taken(recognizer, pace, 1)
    short = batcher.submit("short", [SegmentJob(audio=tone(1.0))])[0]
    await steps_taken(recognizer, pace, 1)  # the iteration in flight ends; the next admits the short clip
    await wait_until(lambda: recognizer.prepared_on)
    return batcher, metrics, long, short


def test_a_segment_arriving_while_rows_step_is_prepared_on_the_helper_and_joins_with_it():
    async def scenario():
        recognizer, pace, gate = paced()
        batcher, metrics, long, short = await short_held_ahead_of_a_running_long_row(recognizer, pace)
        await steps_taken(recognizer, pace, 5)  # the running row keeps stepping meanwhile
        assert recognizer.joins == [[long_item(recognizer)]] and not short.done()
        gate.set()
        pace.release(100)
        results = await asyncio.gather(long, short)
        await batcher.stop()
        return recognizer, metrics, results

    recognizer, metrics, (long, short) = asyncio.run(scenario())
    assert recognizer.prepared_on == ["prefill-ahead_0"]
    assert recognizer.prepared == [None, ["ready:base 1.0s."]]  # the long row joined inline, the short ahead
    assert long.text == "base 12.0s" + "." * 12 and short.text == "base 1.0s."
    assert sample(metrics, "asr_encoder_ahead_duration_seconds_count") == 1


def long_item(recognizer: SteppingRecognizer):
    return recognizer.joins[0][0]


def test_with_nothing_to_step_the_inference_thread_prepares_a_waiting_segment_itself():
    async def scenario():
        recognizer, pace, gate = paced()
        batcher, _ = make(recognizer)
        batcher.start()
        long = batcher.submit("long", [SegmentJob(audio=tone(LONG))])[0]
        await steps_taken(recognizer, pace, 1)
        shorts = [batcher.submit(f"s{i}", [SegmentJob(audio=tone(1.0 + i))])[0] for i in range(2)]
        await steps_taken(recognizer, pace, 1)
        await wait_until(lambda: len(recognizer.prepared_on) == 1)  # the first on the helper, the second waits
        pace.release(100)  # the long row ends; nothing steps while the helper is held
        await wait_until(lambda: len(recognizer.prepared_on) == 2)
        gate.set()
        results = await asyncio.gather(long, *shorts)
        await batcher.stop()
        return recognizer, results

    recognizer, results = asyncio.run(scenario())
    assert recognizer.prepared_on[0].startswith("prefill-ahead") and recognizer.prepared_on[1].startswith("inference")
    assert [r.text for r in results[1:]] == ["base 1.0s.", "base 2.0s.."]


def test_a_failed_preparation_fails_its_request_alone_and_a_cancelled_one_never_joins():
    async def scenario():
        recognizer, pace, gate = paced(fail_prepare=lambda items: RuntimeError("encoder") if
                                       items[0].duration == 2.0 else None)
        batcher, _ = make(recognizer, capacity=3)
        batcher.start()
        long = batcher.submit("long", [SegmentJob(audio=tone(LONG))])[0]
        await steps_taken(recognizer, pace, 1)
        failing = batcher.submit("failing", [SegmentJob(audio=tone(2.0))])[0]
        cancelled = batcher.submit("cancelled", [SegmentJob(audio=tone(3.0))])[0]
        fine = batcher.submit("fine", [SegmentJob(audio=tone(1.0))])[0]
        await steps_taken(recognizer, pace, 1)
        await wait_until(lambda: recognizer.prepared_on)
        assert batcher.cancel("cancelled") == 1
        gate.set()
        pace.release(100)
        outcomes = await asyncio.gather(long, failing, fine, return_exceptions=True)
        await batcher.stop()
        return recognizer, outcomes, cancelled

    recognizer, (long, failing, fine), cancelled = asyncio.run(scenario())
    assert isinstance(failing, InferenceFailed) and fine.text == "base 1.0s." and long.text.startswith("base 12.0s")
    assert cancelled.cancelled()
    joined = [round(item.duration) for join in recognizer.joins for item in join]
    assert 3 not in joined and 2 not in joined


def test_a_short_clip_arriving_behind_long_segments_ahead_goes_before_those_not_started():
    async def scenario():
        recognizer, pace, gate = paced()
        batcher, _ = make(recognizer, capacity=3)
        batcher.start()
        long = batcher.submit("long", [SegmentJob(audio=tone(LONG))])[0]
        await steps_taken(recognizer, pace, 1)
        waiting = [batcher.submit(f"l{i}", [SegmentJob(audio=tone(20.0))])[0] for i in range(3)]
        await steps_taken(recognizer, pace, 1)
        await wait_until(lambda: recognizer.prepared_on)  # one 20 s segment on the helper, two not started
        short = batcher.submit("short", [SegmentJob(audio=tone(1.0))])[0]
        await steps_taken(recognizer, pace, 1)  # the next admission hands the two back and takes the short first
        gate.set()
        pace.release(1000)
        results = await asyncio.gather(long, short, *waiting)
        await batcher.stop()
        return recognizer, results, batcher.pipeline.scorer.calls

    recognizer, results, scored = asyncio.run(scenario())
    assert recognizer.prepare_order[0] == 20.0 and recognizer.prepare_order.index(1.0) == 1
    assert sorted(recognizer.prepare_order) == [1.0, 20.0, 20.0, 20.0]  # each prepared once
    assert sum(scored) == 5  # each segment routed once: the ones handed back keep their route
    assert [r.text for r in results[1:]] == ["base 1.0s."] + ["base 20.0s" + "." * 20] * 3


def test_stop_while_a_segment_is_prepared_answers_every_request_once():
    async def scenario():
        recognizer, pace, gate = paced()
        batcher, _, long, short = await short_held_ahead_of_a_running_long_row(recognizer, pace)
        pace.release(100)
        await wait_until(lambda: long.done())
        stopping = asyncio.ensure_future(batcher.stop())
        outcome = await asyncio.gather(short, return_exceptions=True)
        gate.set()  # the helper thread's preparation ends; nothing takes its result
        await stopping
        return long.result(), outcome[0]

    long, short = asyncio.run(scenario())
    assert long.text.startswith("base 12.0s") and isinstance(short, NotReady)


def test_where_prefill_runs_ahead_a_lone_arrival_does_not_wait_for_company():
    async def scenario():
        batcher, metrics = make(SteppingRecognizer(prepares_ahead=True), wait=30.0)
        batcher.start()
        result = await asyncio.wait_for(batcher.submit("r", [SegmentJob(audio=tone(1.0))])[0], timeout=10.0)
        await batcher.stop()
        return result, metrics

    result, metrics = asyncio.run(scenario())
    assert result.text == "base 1.0s." and sample(metrics, "asr_queue_wait_seconds_sum") < 10.0


@pytest.mark.parametrize(("recognizer", "ahead_on", "expected"), [
    (SteppingRecognizer(prepares_ahead=True), True, True),
    (SteppingRecognizer(prepares_ahead=False), True, False),  # a session that prepares nothing ahead
    (SteppingRecognizer(prepares_ahead=True), None, False),  # by default only on a CPU ("unknown" here)
    (FakeRecognizer(), True, False),  # whole-batch recognizers have no decode session to prepare for
])
def test_prefill_ahead_runs_only_where_it_can(recognizer, ahead_on, expected):
    batcher, _ = make(recognizer, ahead_on=ahead_on)
    assert (batcher._ahead is not None) is expected
    if batcher._ahead is not None:
        batcher._ahead.close()


def test_the_inference_thread_uses_one_cpu_thread_only_while_something_is_prepared_ahead():
    release = threading.Event()

    class Held:
        def prepare(self, items):
            assert release.wait(timeout=30)
            return list(items)

    ahead = PrefillAhead(Held(), capacity=2)
    assert threads_for(None, 4) == 4 and threads_for(ahead, 4) == 4
    ahead.submit([(7, type("Job", (), {"item": "x"})())])
    assert threads_for(ahead, 4) == 1
    release.set()
    ahead.wait(timeout=10)
    [prepared] = ahead.ready()
    assert (prepared.key, prepared.state, prepared.error) == (7, "x", None) and threads_for(ahead, 4) == 4
    ahead.close()
