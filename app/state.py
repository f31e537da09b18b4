"""What the app owns for its lifetime (created by create_app, filled by the lifespan)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field

from app.engine.batcher import Batcher
from app.engine.pipeline import Pipeline
from app.engine.transcription import Transcriber
from app.jobs.delivery import Deliverer
from app.jobs.runner import JobRunner
from app.jobs.service import Jobs
from app.jobs.store import JobStore
from app.metrics import Metrics
from app.settings import Settings


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    pipeline: Pipeline | None = None
    batcher: Batcher | None = None
    transcriber: Transcriber | None = None
    decode_pool: concurrent.futures.ThreadPoolExecutor | None = None
    inference_pool: concurrent.futures.ThreadPoolExecutor | None = None  # model loading and every model call
    # Background jobs (app/jobs), opened once the models are ready; None with MEGA_ASR_JOBS=false.
    store: JobStore | None = None
    jobs: Jobs | None = None
    runner: JobRunner | None = None
    deliverer: Deliverer | None = None
    background: list = field(default_factory=list)  # the job runner's and the deliverer's tasks
    ready: bool = False
    draining: bool = False
    load_error: str | None = None
    inflight: int = 0
    # Called when the service cannot serve (a model failed to load): the CLI stops the server with it.
    request_shutdown: Callable[[], None] | None = None
    started_at: float = field(default=0.0)

    def set_ready(self, ready: bool) -> None:
        self.ready = ready
        self.metrics.ready.set(1 if ready and not self.draining else 0)

    def begin_drain(self) -> None:
        self.draining = True
        self.metrics.ready.set(0)
