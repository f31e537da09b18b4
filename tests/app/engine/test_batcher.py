"""The batcher: shared batches, mixed routes, fairness, faults, admission, cancellation, drain."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from app.engine.batcher import Batcher, BatchLimits
from app.engine.pipeline import Pipeline, SegmentJob
from app.errors import InferenceFailed, NotReady, Overloaded
from app.metrics import Metrics
from tests.fakes import FakeRecognizer, FakeRouter, tone


def make(limits: BatchLimits, recognizer: FakeRecognizer | None = None):
    recognizer = recognizer or FakeRecognizer(languages_robust=frozenset({"en"}))
    metrics = Metrics()
    batcher = Batcher(Pipeline(recognizer, FakeRouter()), limits, metrics)
    return batcher, recognizer, metrics


def sample(metrics: Metrics, name: str, labels: dict | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


async def wait_until(predicate, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_concurrent_requests_share_one_batch_with_mixed_routes():
    async def scenario():
        batcher, recognizer, metrics = make(BatchLimits(max_items=8, max_wait_seconds=5.0))
        batcher.start()
        quiet, loud = tone(1.0, level=0.1), tone(2.0, level=0.9)  # router: 0.1 -> base, 0.9 -> robust
        futures = [batcher.submit(f"r{i}", [SegmentJob(audio=quiet if i % 2 else loud)])[0] for i in range(8)]
        results = await asyncio.gather(*futures)
        await batcher.stop()
        return recognizer, metrics, results

    recognizer, metrics, results = asyncio.run(scenario())
    assert len(recognizer.batches) == 1 and len(recognizer.batches[0]) == 8
    assert [item.robust for item in recognizer.batches[0]] == [i % 2 == 0 for i in range(8)]
    assert [r.route for r in results] == ["robust" if i % 2 == 0 else "base" for i in range(8)]
    assert results[0].text == "robust 2.0s" and results[1].text == "base 1.0s"
    assert sample(metrics, "asr_batch_size_sum") == 8 and sample(metrics, "asr_batch_size_count") == 1
    assert sample(metrics, "asr_batches_total", {"mix": "mixed"}) == 1


def test_batch_closes_at_audio_seconds_limit():
    async def scenario():
        batcher, recognizer, _ = make(BatchLimits(max_items=16, max_audio_seconds=5.0, max_wait_seconds=5.0))
        batcher.start()
        futures = batcher.submit("r", [SegmentJob(audio=tone(2.0)) for _ in range(4)])
        await asyncio.gather(*futures)
        await batcher.stop()
        return recognizer

    recognizer = asyncio.run(scenario())
    assert [len(b) for b in recognizer.batches] == [2, 2]


def test_short_request_is_not_starved_by_a_long_one():
    async def scenario():
        gate = threading.Event()
        batcher, recognizer, _ = make(BatchLimits(max_items=2, max_wait_seconds=0.0), FakeRecognizer(gate=gate))
        batcher.start()
        order: list[str] = []
        long_futures = batcher.submit("long", [SegmentJob(audio=tone(5.0)) for _ in range(12)])
        await wait_until(lambda: batcher.busy)  # first long batch is running (held by the gate)
        short_future = batcher.submit("short", [SegmentJob(audio=tone(1.0))])[0]
        short_future.add_done_callback(lambda _: order.append("short"))
        asyncio.gather(*long_futures).add_done_callback(lambda _: order.append("long"))
        gate.set()
        await asyncio.gather(short_future, *long_futures)
        await batcher.stop()
        return order, recognizer

    order, recognizer = asyncio.run(scenario())
    assert order == ["short", "long"]
    # the short clip rode in the second batch, beside the long file's next segment
    assert any(abs(item.duration - 1.0) < 1e-6 for item in recognizer.batches[1])


def test_model_failure_fails_only_that_batch_and_the_worker_survives():
    async def scenario():
        recognizer = FakeRecognizer(fail=lambda items: RuntimeError("boom") if items[0].duration > 2.5 else None)
        batcher, _, metrics = make(BatchLimits(max_items=4, max_wait_seconds=0.0), recognizer)
        batcher.start()
        bad = batcher.submit("bad", [SegmentJob(audio=tone(3.0))])
        with pytest.raises(InferenceFailed):
            await bad[0]
        good = await batcher.submit("good", [SegmentJob(audio=tone(1.0))])[0]
        await batcher.stop()
        return good, metrics

    good, metrics = asyncio.run(scenario())
    assert good.text == "base 1.0s"
    assert sample(metrics, "asr_errors_total", {"reason": "inference_failed"}) == 1


def test_out_of_memory_retries_in_halves():
    def oom_when_big(items):
        return torch.OutOfMemoryError("CUDA out of memory") if len(items) > 1 else None

    async def scenario():
        batcher, recognizer, _ = make(BatchLimits(max_items=4, max_wait_seconds=5.0),
                                      FakeRecognizer(fail=oom_when_big))
        batcher.start()
        futures = batcher.submit("r", [SegmentJob(audio=tone(1.0 + i / 5)) for i in range(4)])  # one prefill group
        results = await asyncio.gather(*futures)
        await batcher.stop()
        return results, recognizer

    results, recognizer = asyncio.run(scenario())
    assert [r.text for r in results] == ["base 1.0s", "base 1.2s", "base 1.4s", "base 1.6s"]
    assert [len(b) for b in recognizer.batches] == [4, 2, 1, 1, 2, 1, 1]


def test_admission_control_refuses_with_retry_after_and_keeps_accepted_work():
    async def scenario():
        gate = threading.Event()
        batcher, _, metrics = make(BatchLimits(max_items=1, max_wait_seconds=0.0, max_queue_audio_seconds=10.0),
                                   FakeRecognizer(gate=gate))
        batcher.start()
        first = batcher.submit("a", [SegmentJob(audio=tone(1.0))])
        await wait_until(lambda: batcher.busy)
        accepted = batcher.submit("b", [SegmentJob(audio=tone(6.0))])
        with pytest.raises(Overloaded) as refused:
            batcher.submit("c", [SegmentJob(audio=tone(6.0))])
        gate.set()
        results = await asyncio.gather(*first, *accepted)
        await batcher.stop()
        return refused.value, results, metrics

    refused, results, metrics = asyncio.run(scenario())
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    assert len(results) == 2
    assert sample(metrics, "asr_rejected_total", {"reason": "overloaded"}) == 1


def test_cancelled_request_segments_are_dropped_and_counted():
    async def scenario():
        gate = threading.Event()
        batcher, recognizer, metrics = make(BatchLimits(max_items=1, max_wait_seconds=0.0),
                                            FakeRecognizer(gate=gate))
        batcher.start()
        running = batcher.submit("a", [SegmentJob(audio=tone(1.0))])
        await wait_until(lambda: batcher.busy)
        doomed = batcher.submit("b", [SegmentJob(audio=tone(2.0)) for _ in range(3)])
        dropped = batcher.cancel("b")
        gate.set()
        await asyncio.gather(*running)
        await batcher.drain(5.0)
        await batcher.stop()
        return dropped, doomed, recognizer, metrics

    dropped, doomed, recognizer, metrics = asyncio.run(scenario())
    assert dropped == 3 and all(f.cancelled() for f in doomed)
    assert sum(len(b) for b in recognizer.batches) == 1
    assert sample(metrics, "asr_cancelled_segments_total") == 3
    assert sample(metrics, "asr_queue_depth_audio_seconds") == 0


def test_drain_finishes_accepted_work_and_refuses_new():
    async def scenario():
        batcher, _, _ = make(BatchLimits(max_items=2, max_wait_seconds=0.0))
        batcher.start()
        futures = batcher.submit("a", [SegmentJob(audio=tone(1.0)) for _ in range(5)])
        drained = await batcher.drain(10.0)
        with pytest.raises(NotReady):
            batcher.submit("late", [SegmentJob(audio=tone(1.0))])
        await batcher.stop()
        return drained, futures

    drained, futures = asyncio.run(scenario())
    assert drained and all(f.done() and not f.cancelled() and f.exception() is None for f in futures)


def test_stop_answers_whatever_is_still_queued():
    async def scenario():
        gate = threading.Event()
        batcher, _, _ = make(BatchLimits(max_items=1, max_wait_seconds=0.0), FakeRecognizer(gate=gate))
        batcher.start()
        first = batcher.submit("a", [SegmentJob(audio=tone(1.0))])
        await wait_until(lambda: batcher.busy)
        queued = batcher.submit("b", [SegmentJob(audio=tone(1.0))])
        assert not await batcher.drain(0.01)
        gate.set()
        await batcher.stop()
        return first, queued

    first, queued = asyncio.run(scenario())
    assert isinstance(queued[0].exception(), NotReady)
    assert first[0].done() and (first[0].exception() is None or isinstance(first[0].exception(), NotReady))
