"""The engine's job lane: synchronous segments first, job rows held back (and preempted) while synchronous
work is present, bounded job prefill per iteration, job audio outside the 429 limit but inside the
autoscaling signal. The session is the scripted SteppingRecognizer (one character per step)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.engine.batcher import BatchLimits
from app.engine.job_lane import JobLaneLimits
from app.engine.pipeline import SegmentJob
from tests.app.engine.test_batcher import wait_until
from tests.app.engine.test_row_scheduling import make
from tests.fakes import SteppingRecognizer, tone

LANE = JobLaneLimits(rows_beside_sync=1, join_per_iteration=2)


def limits(**overrides) -> BatchLimits:
    values = {"max_items": 4, "max_wait_seconds": 0.0, "job_lane": LANE}
    values.update(overrides)
    return BatchLimits(**values)


def test_job_segments_join_a_bounded_number_per_iteration_and_fill_the_rows_when_alone():
    async def scenario():
        recognizer = SteppingRecognizer()
        batcher, _, _ = make(limits(), recognizer)
        batcher.start()
        futures = batcher.submit("job:a", [SegmentJob(audio=tone(3.0)) for _ in range(6)], lane="job")
        results = await asyncio.gather(*futures)
        await batcher.stop()
        return results, recognizer

    results, recognizer = asyncio.run(scenario())
    assert [r.text for r in results] == ["base 3.0s..."] * 6
    assert max(len(join) for join in recognizer.joins) <= LANE.join_per_iteration
    assert max(len(keys) for keys in recognizer.steps) == 4  # alone, the job uses every row


def test_a_synchronous_clip_preempts_job_rows_and_the_preempted_rows_still_finish_right():
    async def scenario():
        pace = threading.Semaphore(0)
        recognizer = SteppingRecognizer(pace=pace)
        batcher, _, _ = make(limits(), recognizer)
        batcher.start()
        jobs = batcher.submit("job:a", [SegmentJob(audio=tone(12.0)) for _ in range(4)], lane="job")
        pace.release(3)
        await wait_until(lambda: len(recognizer.steps) == 3 and len(recognizer.steps[-1]) == 4)
        short = batcher.submit("sync", [SegmentJob(audio=tone(1.0))])[0]
        pace.release(1000)
        short_result = await short
        job_results = await asyncio.gather(*jobs)
        await batcher.stop()
        return short_result, job_results, recognizer

    short, job_results, recognizer = asyncio.run(scenario())
    assert short.text == "base 1.0s."
    assert [r.text for r in job_results] == ["base 12.0s" + "." * 12] * 4  # redone from the start, same text
    assert len(recognizer.cancelled) == 3  # the newest job rows beyond rows_beside_sync=1 left the session
    short_join = next(i for i, join in enumerate(recognizer.joins) if join[0].duration == 1.0)
    assert len(recognizer.joins[short_join]) == 1
    short_steps = [keys for keys in recognizer.steps if 4 in keys]  # keys 0-3: the job's, 4: the clip's
    assert len(short_steps) == 9 and all(len(keys) == 2 for keys in short_steps)  # beside one job row only


def test_a_synchronous_clip_is_admitted_before_queued_job_segments():
    async def scenario():
        gate = threading.Event()
        recognizer = SteppingRecognizer(gate=gate)
        batcher, _, _ = make(limits(max_items=2), recognizer)
        batcher.start()
        jobs = batcher.submit("job:a", [SegmentJob(audio=tone(2.0)) for _ in range(6)], lane="job")
        await wait_until(lambda: batcher.running >= 1)
        short = batcher.submit("sync", [SegmentJob(audio=tone(1.0))])[0]
        gate.set()
        await asyncio.gather(short, *jobs)
        await batcher.stop()
        return recognizer

    recognizer = asyncio.run(scenario())
    durations = [item.duration for join in recognizer.joins for item in join]
    assert durations.index(1.0) <= 2  # right after the rows that were running when it arrived


def test_job_audio_is_outside_the_429_limit_and_inside_the_autoscaling_signal():
    async def scenario():
        gate = threading.Event()
        recognizer = SteppingRecognizer(gate=gate)
        batcher, _, metrics = make(limits(max_items=1, max_queue_audio_seconds=5.0), recognizer)
        batcher.start()
        jobs = batcher.submit("job:a", [SegmentJob(audio=tone(3.0)) for _ in range(4)], lane="job")
        await wait_until(lambda: batcher.running == 1)
        queued_signal = metrics.queue_audio._value.get()
        sync = batcher.submit("sync", [SegmentJob(audio=tone(4.0))])  # the sync queue is empty: admitted
        gate.set()
        await asyncio.gather(*jobs, *sync)
        await batcher.stop()
        return queued_signal

    assert asyncio.run(scenario()) == 9.0  # three job segments of 3 s waiting


def test_synchronous_work_counts_as_present_for_the_quiet_period_after_it():
    from app.engine.fair_queue import FairQueue
    from app.engine.job_lane import JobLane

    lane = JobLane(JobLaneLimits(rows_beside_sync=1, sync_quiet_seconds=0.5), FairQueue())
    assert not lane.sync_recent(False, now=10.0) and lane.cap(8, sync_present=False) == 8
    assert lane.sync_recent(True, now=10.0)
    assert lane.sync_recent(False, now=10.4) and lane.quiet_in(10.2) == pytest.approx(0.3)
    assert not lane.sync_recent(False, now=10.6) and lane.quiet_in(10.6) == 0.0
