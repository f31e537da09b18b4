"""HTTP endpoints: OpenAI's /v1/audio/transcriptions plus the router, models, health and metrics.

Endpoints only parse, check and await; decoding and model work happen off the event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.engine.pipeline import LanguageNotSupported, Pipeline, RouteNotAvailable
from app.engine.transcription import TranscriptionOptions
from app.engine.words import WordsNotAvailable
from app.errors import ClientClosed, DeadlineExceeded, InvalidRequest, NotFound, NotReady, Unauthorized
from app.http import formats
from app.http.forms import TranscriptionForm, parse_quality_form, parse_transcription_form, read_form
from app.http.openapi import QUALITY_BODY, TRANSCRIPTION_BODY
from app.http.streaming import TranscriptStream, client_disconnected, streaming_response
from app.state import ServiceState

log = logging.getLogger("app.http.routes")
router = APIRouter()


def _state(request: Request) -> ServiceState:
    return request.app.state.service


def check_api_key(request: Request, state: ServiceState) -> None:
    keys = state.settings.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    given_bytes = given.strip().encode()
    # Compare against every key without stopping early: time does not reveal which key matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given_bytes, key.get_secret_value().encode())
    if scheme.lower() != "bearer" or not matched:
        raise Unauthorized("missing or invalid API key: send `Authorization: Bearer <key>`")


def _check_serving(state: ServiceState) -> None:
    if state.draining or not state.ready:
        state.metrics.rejected.labels(reason="draining" if state.draining else "loading").inc()
    if state.draining:
        raise NotReady("the service is draining for shutdown; retry on another replica",
                       headers={"Retry-After": "1"})
    if not state.ready:
        raise NotReady("models are still loading", headers={"Retry-After": "5"})


@router.post("/v1/audio/transcriptions", openapi_extra=TRANSCRIPTION_BODY, tags=["audio"])
async def create_transcription(request: Request) -> Response:
    state = _state(request)
    started = time.monotonic()
    check_api_key(request, state)
    _check_serving(state)
    release = _count_in_flight(state)
    response = None
    try:
        response = await _transcribe(request, state, started, release)
        return response
    finally:
        if not isinstance(response, TranscriptStream):  # a stream is in flight until it ends
            release()


def _count_in_flight(state: ServiceState):
    """Count a request as in flight; returns the (idempotent) release."""
    state.inflight += 1
    state.metrics.inflight.inc()
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            state.inflight -= 1
            state.metrics.inflight.dec()

    return release


async def _transcribe(request: Request, state: ServiceState, started: float, release) -> Response:
    settings = state.settings
    form = parse_transcription_form(await read_form(request, settings.max_upload_bytes))
    check_paths(state.pipeline, form)
    data = await form.upload.read()
    if not data:
        raise InvalidRequest("the uploaded file is empty", param="file", code="empty_file")
    decode_started = time.perf_counter()
    audio = await state.transcriber.decode(data, form.upload.filename)
    state.metrics.decode_latency.observe(time.perf_counter() - decode_started)
    request.state.audio_seconds = round(audio.duration, 3)
    options = transcription_options(form, settings.threshold)
    if form.stream:
        return streaming_response(request, state, audio, options, started + settings.request_timeout_seconds,
                                  on_close=release)
    remaining = settings.request_timeout_seconds - (time.monotonic() - started)
    work = state.transcriber.transcribe(request.state.request_id, audio, options)
    transcript = await _until_deadline_or_disconnect(request, work, remaining)
    request.state.route = transcript.route
    return _render(transcript, form.response_format)


def check_paths(pipeline: Pipeline, form: TranscriptionForm) -> None:
    """Refuse at admission what no loaded path can do (a request's or a job's form): the route, the
    language, word times."""
    try:
        pipeline.check_route(form.route)
        pipeline.check_language(form.language, form.route)
        if form.words:
            pipeline.check_words(form.language, form.route)
    except RouteNotAvailable as exc:
        raise InvalidRequest(str(exc), param="route", code="route_unavailable") from None
    except LanguageNotSupported as exc:
        raise InvalidRequest(str(exc), param="language", code="unsupported_language") from None
    except WordsNotAvailable as exc:
        raise InvalidRequest(str(exc), param="timestamp_granularities[]",
                             code="word_timestamps_unavailable") from None


def transcription_options(form: TranscriptionForm, default_threshold: float) -> TranscriptionOptions:
    """The engine's options for a parsed transcription form (a request's or a job's)."""
    threshold = default_threshold if form.threshold is None else form.threshold
    return TranscriptionOptions(language=form.language, prompt=form.prompt, route=form.route, threshold=threshold,
                                words=form.words)


async def _until_deadline_or_disconnect(request: Request, work, timeout: float):
    """Await `work`; cancel it (dropping its queued segments) on deadline or client disconnect."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(client_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, timeout=max(0.0, timeout),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if watcher in done and not watcher.cancelled() and watcher.result():
        request.state.route = "cancelled"
        raise ClientClosed("client closed the connection")
    raise DeadlineExceeded("the request did not finish within the configured deadline")


def _render(transcript, response_format: str) -> Response:
    return formats.response_for(transcript, response_format)


@router.post("/v1/audio/quality", openapi_extra=QUALITY_BODY, tags=["audio"])
async def assess_quality(request: Request) -> JSONResponse:
    state = _state(request)
    check_api_key(request, state)
    _check_serving(state)
    form = parse_quality_form(await read_form(request, state.settings.max_upload_bytes))
    data = await form.upload.read()
    if not data:
        raise InvalidRequest("the uploaded file is empty", param="file", code="empty_file")
    if state.pipeline.scorer is None:
        raise InvalidRequest("this deployment runs without a router", code="no_router")
    audio = await state.transcriber.decode(data, form.upload.filename)
    threshold = state.settings.threshold if form.threshold is None else form.threshold
    result = await state.transcriber.assess(audio, threshold)
    request.state.route = result.route
    return JSONResponse({"router_score": round(result.router_score, 4), "route": result.route,
                         "threshold": threshold, "duration": round(result.duration, 3)})


@router.get("/v1/models", tags=["models"])
async def list_models(request: Request) -> dict:
    state = _state(request)
    check_api_key(request, state)
    return {"object": "list", "data": [_model_card(state)]}


@router.get("/v1/models/{model_id}", tags=["models"])
async def get_model(model_id: str, request: Request) -> dict:
    state = _state(request)
    check_api_key(request, state)
    if model_id != state.settings.served_model_name:
        raise NotFound(f"model {model_id!r} not found", code="model_not_found")
    return _model_card(state)


def _model_card(state: ServiceState) -> dict:
    return {"id": state.settings.served_model_name, "object": "model", "created": int(state.started_at),
            "owned_by": "mega-asr", "profile": state.settings.profile,
            "description": state.pipeline.description if state.pipeline else "",
            # where the recognizer runs and in which dtype ("auto" resolved; null until the models are loaded)
            "device": state.pipeline.device if state.pipeline else None,
            "dtype": state.pipeline.dtype if state.pipeline else None,
            "dtype_reason": state.pipeline.dtype_reason if state.pipeline else None,
            # whether timestamp_granularities[]=word is served (an aligner is loaded; null until loaded)
            "word_timestamps": state.pipeline.words is not None if state.pipeline else None}


@router.get("/healthz", tags=["health"])
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", tags=["health"])
async def readyz(request: Request) -> JSONResponse:
    state = _state(request)
    if state.ready and not state.draining:
        return JSONResponse({"status": "ready"})
    status = "draining" if state.draining else "failed" if state.load_error else "loading"
    return JSONResponse({"status": status}, status_code=503)


@router.get("/metrics", tags=["health"])
async def metrics(request: Request) -> Response:
    return Response(generate_latest(_state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)
