"""HTTP endpoints of background jobs: /v1/audio/transcriptions/jobs (OpenAI's conventions: lists, ids,
metadata, the error envelope). Submitting streams the upload into the job store; everything else reads or
changes the job there (app/jobs). With MEGA_ASR_API_KEYS set, a job belongs to the key that created it:
any other key gets 404 for it and never sees it in a list."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.errors import Conflict, InvalidRequest, NotFound, NotReady
from app.http import formats
from app.http.forms import parse_job_form, read_form
from app.http.openapi import JOB_BODY
from app.http.routes import check_api_key, check_paths, transcription_options
from app.jobs.service import Jobs, Submission
from app.jobs.store import JobRecord
from app.jobs.webhooks import Allowed, check_url
from app.state import ServiceState

router = APIRouter(tags=["jobs"])
PREFIX = "/v1/audio/transcriptions/jobs"
_STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled")
_MAX_IDEMPOTENCY_KEY = 255


def job_object(job: JobRecord) -> dict:
    """The job as clients see it (`error`: the error envelope's object when the job failed)."""
    def stamp(value: float | None) -> int | None:
        return None if value is None else int(value)

    return {"id": job.id, "object": "transcription.job", "status": job.status, "created_at": stamp(job.created_at),
            "started_at": stamp(job.started_at), "completed_at": stamp(job.completed_at),
            "duration": None if job.duration is None else round(job.duration, 3),
            "progress": {"audio_seconds_done": round(job.audio_seconds_done, 3),
                         "audio_seconds_total": None if job.audio_seconds_total is None
                         else round(job.audio_seconds_total, 3)},
            "metadata": job.metadata, "error": job.error}


def _jobs(request: Request) -> tuple[ServiceState, Jobs, str]:
    """The state, the job service and the caller's owner id (a hash of its API key; "" without keys)."""
    state: ServiceState = request.app.state.service
    check_api_key(request, state)
    if not state.settings.jobs:
        raise NotFound("background jobs are turned off on this deployment (MEGA_ASR_JOBS=false)",
                       code="jobs_disabled")
    if state.jobs is None:
        raise NotReady("the job store opens once the models are loaded", headers={"Retry-After": "5"})
    owner = ""
    if state.settings.api_keys:
        key = request.headers.get("authorization", "").partition(" ")[2].strip()
        owner = hashlib.sha256(key.encode()).hexdigest()[:32]
    return state, state.jobs, owner


async def _owned(jobs: Jobs, job_id: str, owner: str) -> JobRecord:
    job = await jobs.get(job_id, owner)
    if job is None:
        raise NotFound(f"no job {job_id!r}", param="job_id", code="job_not_found")
    return job


@router.post(PREFIX, status_code=202, openapi_extra=JOB_BODY)
async def submit_job(request: Request) -> JSONResponse:
    state, jobs, owner = _jobs(request)
    if state.draining:
        raise NotReady("the service is draining for shutdown; retry on another replica", headers={"Retry-After": "1"})
    settings = state.settings
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= _MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(f"Idempotency-Key must be 1 to {_MAX_IDEMPOTENCY_KEY} characters",
                             param="Idempotency-Key")
    form = parse_job_form(await read_form(request, settings.job_max_upload_bytes))
    fields = form.transcription
    if state.pipeline is not None:  # accepted while the models load: checked against them once loaded
        check_paths(state.pipeline, fields)
    if form.webhook_url is not None:
        if settings.webhook_secret is None:
            raise InvalidRequest("webhooks are not configured on this service (MEGA_ASR_WEBHOOK_SECRET)",
                                 param="webhook_url", code="webhooks_not_configured")
        check_url(form.webhook_url, Allowed.parse(settings.webhook_allowed_hosts))
    submission = Submission(owner=owner, options=transcription_options(fields, settings.threshold),
                            response_format=fields.response_format, metadata=form.metadata,
                            webhook_url=form.webhook_url, idempotency_key=key)
    job, created = await jobs.submit(submission, fields.upload)
    headers = {"Location": f"{PREFIX}/{job.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(job_object(job), status_code=202, headers=headers)


@router.get(PREFIX)
async def list_jobs(request: Request, status: str | None = None, limit: int = 20, after: str | None = None) -> dict:
    _, jobs, owner = _jobs(request)
    if status is not None and status not in _STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(_STATUSES)}", param="status")
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit must be within [1, 100]", param="limit")
    rows, has_more = await jobs.list(owner, status, limit, after)
    data = [job_object(job) for job in rows]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}


@router.get(PREFIX + "/{job_id}")
async def get_job(job_id: str, request: Request) -> dict:
    _, jobs, owner = _jobs(request)
    return job_object(await _owned(jobs, job_id, owner))


@router.get(PREFIX + "/{job_id}/transcript")
async def get_transcript(job_id: str, request: Request, response_format: str | None = None) -> Response:
    _, jobs, owner = _jobs(request)
    job = await _owned(jobs, job_id, owner)
    response_format = response_format or job.options["response_format"]
    if response_format not in formats.RESPONSE_FORMATS:
        raise InvalidRequest(f"response_format must be one of {', '.join(formats.RESPONSE_FORMATS)}",
                             param="response_format")
    if job.status != "completed":
        raise Conflict(f"job {job.id} is {job.status}; its transcript is there once it is completed",
                       code="job_not_completed")
    return formats.response_for(await jobs.transcript(job), response_format)


@router.post(PREFIX + "/{job_id}/cancel")
async def cancel_job(job_id: str, request: Request) -> dict:
    _, jobs, owner = _jobs(request)
    job = await _owned(jobs, job_id, owner)
    if not await jobs.cancel(job):
        current = await _owned(jobs, job_id, owner)
        raise Conflict(f"job {job.id} is already {current.status}: only queued or in-progress jobs can be "
                       "cancelled", code="job_already_finished")
    return job_object(await _owned(jobs, job_id, owner))


@router.delete(PREFIX + "/{job_id}")
async def delete_job(job_id: str, request: Request) -> dict:
    _, jobs, owner = _jobs(request)
    await jobs.delete(await _owned(jobs, job_id, owner))
    return {"id": job_id, "object": "transcription.job.deleted", "deleted": True}
