"""The batcher schedules rows of a decode session: joining between steps, leaving at once, streaming deltas,
cancelling running rows, containing failures, requeueing on out-of-memory, bounding rows by cache memory.

The session is the scripted SteppingRecognizer (tests/fakes.py): a row emits its text '<route> <s>s' one
character per step, so longer texts take more steps.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from app.engine.batcher import Batcher, BatchLimits
from app.engine.guards import GuardConfig
from app.engine.pipeline import Pipeline, SegmentJob
from app.errors import InferenceFailed
from app.metrics import Metrics
from tests.app.engine.test_batcher import sample, wait_until
from tests.fakes import FakeRouter, SteppingRecognizer, tone


def make(limits: BatchLimits, recognizer: SteppingRecognizer | None = None):
    recognizer = recognizer or SteppingRecognizer(languages_robust=frozenset({"en"}))
    metrics = Metrics()
    pipeline = Pipeline(recognizer, FakeRouter(), guards=GuardConfig(enabled=False))  # fake texts repeat dots
    return Batcher(pipeline, limits, metrics), recognizer, metrics


def test_a_short_clip_joins_running_rows_and_leaves_before_them():
    async def scenario(engine):
        pace = threading.Semaphore(0)
        recognizer = SteppingRecognizer(pace=pace)
        batcher, _, _ = make(BatchLimits(max_items=8, max_wait_seconds=0.0, engine=engine), recognizer)
        batcher.start()
        order: list[str] = []
        longs = batcher.submit("long", [SegmentJob(audio=tone(12.0)) for _ in range(2)])  # 22 characters
        asyncio.gather(*longs).add_done_callback(lambda _: order.append("long"))
        pace.release(2)
        await wait_until(lambda: len(recognizer.steps) == 2)  # the long rows are decoding
        short = batcher.submit("short", [SegmentJob(audio=tone(1.0))])[0]  # 10 characters
        short.add_done_callback(lambda _: order.append("short"))
        pace.release(100)
        results = await asyncio.gather(short, *longs)
        await batcher.stop()
        return order, results, recognizer

    order, results, recognizer = asyncio.run(scenario("continuous"))
    assert [r.text for r in results] == ["base 1.0s.", "base 12.0s" + "." * 12, "base 12.0s" + "." * 12]
    assert order == ["short", "long"]
    assert [len(j) for j in recognizer.joins] == [2, 1]
    # The third iteration had already admitted (and was waiting for its step) when the clip arrived: the
    # clip joined in the fourth, beside the long rows.
    assert len(recognizer.steps[2]) == 2 and len(recognizer.steps[3]) == 3

    order, results, recognizer = asyncio.run(scenario("static"))
    assert order == ["long", "short"]  # static: the batch runs to its end first
    assert all(len(keys) <= 2 for keys in recognizer.steps)


def test_rows_leave_at_their_own_step_and_deltas_stream_in_order():
    async def scenario():
        batcher, _, metrics = make(BatchLimits(max_items=8, max_wait_seconds=0.05))
        batcher.start()
        deltas: dict[int, list[str]] = {0: [], 1: []}
        futures = batcher.submit("r", [SegmentJob(audio=tone(1.0)), SegmentJob(audio=tone(12.0))],
                                 listener=lambda index, delta: deltas[index].append(delta))
        done = await asyncio.wait_for(asyncio.gather(*futures), 10)
        await batcher.stop()
        return done, deltas, metrics

    done, deltas, metrics = asyncio.run(scenario())
    texts = ["base 1.0s.", "base 12.0s" + "." * 12]
    assert ["".join(deltas[0]), "".join(deltas[1])] == texts
    assert all(len(d) == 1 for d in deltas[0])  # one character per step: it really streamed
    assert [r.text for r in done] == texts
    assert sample(metrics, "asr_generated_tokens_total", {"route": "base"}) == sum(map(len, texts))
    assert sample(metrics, "asr_time_to_first_token_seconds_count", {"route": "base"}) == 2
    assert sample(metrics, "asr_running_rows") == 0


def test_cancelling_a_request_removes_its_running_rows_at_the_next_step():
    async def scenario():
        pace = threading.Semaphore(1)
        recognizer = SteppingRecognizer(pace=pace)
        batcher, _, metrics = make(BatchLimits(max_items=8, max_wait_seconds=0.05), recognizer)
        batcher.start()
        keep = batcher.submit("keep", [SegmentJob(audio=tone(12.0))])
        gone = batcher.submit("gone", [SegmentJob(audio=tone(12.0))])
        await wait_until(lambda: len(recognizer.steps) == 1)  # joined, stepped once; the next step waits
        dropped = batcher.cancel("gone")
        pace.release(100)
        result = await keep[0]
        await batcher.drain(5.0)
        await batcher.stop()
        return dropped, gone, result, recognizer, metrics

    dropped, gone, result, recognizer, metrics = asyncio.run(scenario())
    assert dropped == 1 and gone[0].cancelled() and result.text == "base 12.0s" + "." * 12
    assert len(recognizer.cancelled) == 1  # the session freed the row
    # The step already under way ran both rows; every later step ran only the kept row.
    assert [len(keys) for keys in recognizer.steps[:2]] == [2, 2]
    assert all(len(keys) == 1 for keys in recognizer.steps[2:])
    assert sample(metrics, "asr_cancelled_segments_total") == 1


def test_a_failed_step_fails_the_running_rows_only_and_the_worker_goes_on():
    async def scenario():
        pace = threading.Semaphore(1)
        failures = iter([RuntimeError("step broke")])
        recognizer = SteppingRecognizer(pace=pace,
                                        fail_step=lambda keys: next(failures, None) if len(keys) == 2 else None)
        batcher, _, metrics = make(BatchLimits(max_items=2, max_wait_seconds=0.05), recognizer)
        batcher.start()
        running = batcher.submit("a", [SegmentJob(audio=tone(2.0)), SegmentJob(audio=tone(3.0))])
        await wait_until(lambda: len(recognizer.joins) == 1)
        queued = batcher.submit("b", [SegmentJob(audio=tone(1.0))])  # no free row: waits in the queue
        pace.release(100)
        outcome = await asyncio.gather(*running, *queued, return_exceptions=True)
        await batcher.stop()
        return outcome, metrics

    outcome, metrics = asyncio.run(scenario())
    assert all(isinstance(o, InferenceFailed) for o in outcome[:2])
    assert outcome[2].text == "base 1.0s."
    assert sample(metrics, "asr_errors_total", {"reason": "inference_failed"}) == 2


def test_a_failing_segment_in_a_join_fails_alone():
    async def scenario():
        recognizer = SteppingRecognizer(
            fail_join=lambda items: ValueError("bad") if any(i.duration > 2.5 for i in items) else None)
        batcher, _, _ = make(BatchLimits(max_items=8, max_wait_seconds=0.2), recognizer)
        batcher.start()
        futures = [batcher.submit(f"r{s}", [SegmentJob(audio=tone(s))])[0] for s in (1.0, 3.0, 2.0)]
        outcome = await asyncio.gather(*futures, return_exceptions=True)
        await batcher.stop()
        return outcome

    outcome = asyncio.run(scenario())
    assert outcome[0].text == "base 1.0s." and outcome[2].text == "base 2.0s.."
    assert isinstance(outcome[1], InferenceFailed)


def test_out_of_memory_in_a_step_requeues_the_newest_rows_without_repeating_their_text():
    async def scenario():
        tripped = []

        def oom_once_at_three(keys):
            if len(keys) == 3 and not tripped:
                tripped.append(keys)
                return torch.OutOfMemoryError("CUDA out of memory")
            return None

        recognizer = SteppingRecognizer(fail_step=oom_once_at_three)
        batcher, _, _ = make(BatchLimits(max_items=3, max_wait_seconds=0.1), recognizer)
        batcher.start()
        deltas: list[str] = []
        futures = [batcher.submit(f"r{i}", [SegmentJob(audio=tone(1.0 + i))],
                                  listener=lambda _, d, i=i: deltas.append((i, d)))[0] for i in range(3)]
        results = await asyncio.gather(*futures)
        await batcher.stop()
        return results, deltas, recognizer

    results, deltas, recognizer = asyncio.run(scenario())
    texts = ["base 1.0s.", "base 2.0s..", "base 3.0s..."]
    assert [r.text for r in results] == texts
    for index, text in enumerate(texts):
        assert "".join(d for i, d in deltas if i == index) == text  # no character sent twice
    assert len(recognizer.joins) >= 2  # the evicted row joined again


def test_row_limit_follows_the_cache_memory_bound():
    recognizer = SteppingRecognizer(row_bytes_each=100 * 2**20)
    batcher, _, _ = make(BatchLimits(max_items=16, max_kv_cache_bytes=350 * 2**20), recognizer)
    assert batcher.row_limit == 3
    unbounded, _, _ = make(BatchLimits(max_items=16), SteppingRecognizer(row_bytes_each=100 * 2**20))
    assert unbounded.row_limit == 16

    async def scenario():
        batcher.start()
        futures = [batcher.submit(f"r{i}", [SegmentJob(audio=tone(1.0))])[0] for i in range(5)]
        await asyncio.gather(*futures)
        await batcher.stop()

    asyncio.run(scenario())
    assert max(len(keys) for keys in recognizer.steps) == 3


@pytest.mark.parametrize("engine", ["continuous", "static"])
def test_drain_waits_for_running_rows(engine):
    async def scenario():
        batcher, _, _ = make(BatchLimits(max_items=2, max_wait_seconds=0.0, engine=engine))
        batcher.start()
        futures = batcher.submit("a", [SegmentJob(audio=tone(1.0 + i)) for i in range(5)])
        drained = await batcher.drain(10.0)
        await batcher.stop()
        return drained, futures

    drained, futures = asyncio.run(scenario())
    assert drained and all(f.done() and f.exception() is None for f in futures)


def test_a_new_rows_first_text_goes_out_after_its_prefill_before_any_step():
    async def scenario():
        pace = threading.Semaphore(0)
        recognizer = SteppingRecognizer(pace=pace)
        batcher, _, _ = make(BatchLimits(max_items=4, max_wait_seconds=0.0), recognizer)
        batcher.start()
        deltas: list[str] = []
        future = batcher.submit("r", [SegmentJob(audio=tone(1.0))], listener=lambda _, d: deltas.append(d))[0]
        await wait_until(lambda: deltas == ["b"])
        steps_before_first_text = len(recognizer.steps)
        pace.release(100)
        await future
        await batcher.stop()
        return steps_before_first_text, deltas

    steps_before_first_text, deltas = asyncio.run(scenario())
    assert steps_before_first_text == 0 and "".join(deltas) == "base 1.0s."
