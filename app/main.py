"""create_app(settings): the application factory. The lifespan owns everything with a lifetime:
it loads the models (off the event loop), warms them up, flips readiness, and on shutdown drains."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
from fastapi import FastAPI

from app.audio.speech_gate import SpeechGateConfig
from app.engine.batcher import Batcher, BatchLimits
from app.engine.inference_thread import audio_executor, cpu_threads, inference_executor
from app.engine.job_lane import JobLaneLimits
from app.engine.pipeline import Pipeline, SegmentJob
from app.engine.shortest_first import ShortestFirst
from app.engine.transcription import Transcriber
from app.http import jobs as job_routes
from app.http import routes
from app.http.errors import install_error_handlers
from app.http.middleware import RequestContextMiddleware
from app.jobs.delivery import Deliverer, DeliveryConfig
from app.jobs.runner import JobRunner, RunnerConfig
from app.jobs.service import Jobs
from app.jobs.store import JobStore
from app.jobs.webhooks import Allowed
from app.metrics import Metrics
from app.settings import Settings
from app.state import ServiceState

log = logging.getLogger("app.main")
PipelineLoader = Callable[[Settings, Metrics], Pipeline]


def create_app(settings: Settings | None = None, *, pipeline: Pipeline | None = None,
               load_pipeline: PipelineLoader | None = None) -> FastAPI:
    """Build the app. Pass `pipeline` (tests, fakes) or `load_pipeline`; default loads the profile."""
    settings = settings or Settings()
    state = ServiceState(settings=settings, metrics=Metrics(), started_at=time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.decode_pool = audio_executor(settings.decode_threads)
        state.inference_pool = inference_executor(cpu_threads(settings.torch_threads))
        loading = asyncio.create_task(_load_and_warm(state, pipeline, load_pipeline))
        try:
            yield
        finally:
            await _shut_down(state, loading)

    app = FastAPI(title="Mega-ASR transcription service", version="0.1.0", lifespan=lifespan)
    app.state.service = state
    app.include_router(routes.router)
    app.include_router(job_routes.router)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=state.metrics)
    return app


async def _load_and_warm(state: ServiceState, pipeline: Pipeline | None,
                         loader: PipelineLoader | None) -> None:
    settings = state.settings
    try:
        if pipeline is None:
            from app.profiles import load_pipeline as default_loader

            # On the thread that will run it: one OpenMP team in the process (app/engine/inference_thread.py)
            pipeline = await asyncio.get_running_loop().run_in_executor(
                state.inference_pool, loader or default_loader, settings, state.metrics)
        state.pipeline = pipeline
        state.metrics.model_info.labels(profile=settings.profile, device=pipeline.device,
                                        dtype=pipeline.dtype, dtype_reason=pipeline.dtype_reason).set(1)
        state.batcher = Batcher(pipeline, _limits(settings), state.metrics, executor=state.inference_pool,
                                threads=cpu_threads(settings.torch_threads))
        state.batcher.start()
        state.transcriber = Transcriber(pipeline, state.batcher, state.decode_pool, state.metrics,
                                        max_audio_seconds=settings.max_audio_seconds,
                                        max_segment_seconds=settings.max_segment_seconds,
                                        speech_gate=SpeechGateConfig.from_settings(settings),
                                        speech_edges=pipeline.words is not None and pipeline.words.speech_edges)
        if settings.warmup:
            await _warm_up(state)
        if settings.jobs:
            await _start_jobs(state)
        state.set_ready(True)
        log.info("ready: %s; device=%s dtype=%s%s", pipeline.description, pipeline.device, pipeline.dtype,
                 f" ({pipeline.dtype_reason})" if pipeline.dtype_reason else "")
    except Exception as exc:  # a service that cannot load its models must not run
        state.load_error = f"{type(exc).__name__}: {exc}"
        log.exception("model loading failed; stopping the service")
        _stop_process(state)


async def _warm_up(state: ServiceState) -> None:
    """One real inference per route through the batcher (router, prefill, decode steps), so the first
    request does not pay for lazy initialisation."""
    rng = np.random.default_rng(0)
    audio = (0.01 * rng.standard_normal(16_000)).astype(np.float32)
    jobs = [SegmentJob(audio=audio, route="base"), SegmentJob(audio=audio, route="robust")]
    started = time.perf_counter()
    results = await asyncio.gather(*state.batcher.submit("warm-up", jobs))
    if len(results) != len(jobs):
        raise RuntimeError("warm-up returned the wrong number of results")
    state.metrics.model_load.labels(component="warmup").set(time.perf_counter() - started)


def _stop_process(state: ServiceState) -> None:
    if state.request_shutdown is not None:
        state.request_shutdown()
    else:  # served by a plain `uvicorn app.main:...`: ask it to stop like an operator would
        os.kill(os.getpid(), signal.SIGTERM)


async def _start_jobs(state: ServiceState) -> None:
    """Open the job store (migrating it), then run this replica's job runner and webhook deliverer."""
    settings = state.settings
    state.store = await JobStore.open(settings.job_database_url)
    worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    deliverer = None
    if settings.webhook_secret is not None:
        deliverer = Deliverer(state.store, DeliveryConfig(
            secret=settings.webhook_secret.get_secret_value(), retry_seconds=settings.webhook_retry_seconds,
            timeout_seconds=settings.webhook_timeout_seconds, allowed=Allowed.parse(settings.webhook_allowed_hosts),
            poll_seconds=settings.job_poll_seconds), state.metrics)
    runner = JobRunner(state.store, state.transcriber, RunnerConfig(
        worker=worker, lease_seconds=settings.job_lease_seconds, heartbeat_seconds=settings.job_heartbeat_seconds,
        poll_seconds=settings.job_poll_seconds, concurrency=settings.job_concurrency,
        engine_window=settings.job_engine_window, max_audio_seconds=settings.job_max_audio_seconds,
        max_segment_seconds=settings.max_segment_seconds, keep_audio=settings.job_keep_audio,
        retention_seconds=settings.job_retention_hours * 3600), state.metrics,
        on_finished=deliverer.wake.set if deliverer is not None else lambda: None)
    state.jobs = Jobs(state.store, runner, max_upload_bytes=settings.job_max_upload_bytes,
                      max_audio_seconds=settings.job_max_audio_seconds, keep_audio=settings.job_keep_audio,
                      max_backlog_seconds=settings.job_max_backlog_hours * 3600)
    state.runner, state.deliverer = runner, deliverer
    state.background = [asyncio.create_task(runner.run(), name="job runner")]
    if deliverer is not None:
        state.background.append(asyncio.create_task(deliverer.run(), name="webhook deliverer"))
    log.info("jobs: store %s, worker %s", state.store.engine.dialect.name, worker)


async def _stop_jobs(state: ServiceState) -> None:
    """Stop claiming and delivering; jobs running here keep what they stored and are given back (another
    replica, or this one after a restart, resumes them)."""
    for task in state.background:
        task.cancel()
    await asyncio.gather(*state.background, return_exceptions=True)
    if state.runner is not None:
        await state.runner.stop()
    if state.deliverer is not None:
        await state.deliverer.close()
    if state.store is not None:
        await state.store.close()


async def _shut_down(state: ServiceState, loading: asyncio.Task) -> None:
    state.begin_drain()
    if not loading.done():
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
    await _stop_jobs(state)
    if state.batcher is not None:
        drained = await state.batcher.drain(state.settings.drain_seconds)
        if not drained:
            log.warning("drain timed out after %.0f s; failing what is left", state.settings.drain_seconds)
        await state.batcher.stop()  # shuts the inference thread down
    elif state.inference_pool is not None:  # loading failed or was cancelled
        state.inference_pool.shutdown(wait=False, cancel_futures=True)
    if state.decode_pool is not None:
        state.decode_pool.shutdown(wait=False, cancel_futures=True)


def _limits(settings: Settings) -> BatchLimits:
    return BatchLimits(max_items=settings.max_batch_items, max_audio_seconds=settings.max_batch_audio_seconds,
                       max_wait_seconds=settings.max_batch_wait_ms / 1000,
                       max_queue_audio_seconds=settings.max_queue_audio_seconds,
                       max_queue_segments=settings.max_queue_segments,
                       max_kv_cache_bytes=int(settings.max_kv_cache_mb * 2**20), engine=settings.engine,
                       shortest_first=ShortestFirst(settings.shortest_first, settings.shortest_first_aging,
                                                    settings.max_prefill_seconds),
                       prefill_ahead=settings.prefill_ahead,
                       job_lane=JobLaneLimits(rows_beside_sync=settings.job_rows_beside_sync,
                                              join_per_iteration=settings.job_join_per_iteration,
                                              sync_quiet_seconds=settings.job_sync_quiet_ms / 1000))
