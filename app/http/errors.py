"""The error envelope and the app's exception handlers: every error a client sees is OpenAI's
{"error": {"message", "type", "param", "code"}} with the status of its type (app/errors.py)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import ServiceError, status_of

log = logging.getLogger("app.http.errors")


def envelope(error: ServiceError) -> dict:
    return {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as the envelope with the status of its type; nothing else reaches a client."""
    def respond(request: Request, error: ServiceError) -> JSONResponse:
        request.app.state.service.metrics.errors.labels(reason=error.code).inc()
        return JSONResponse(envelope(error), status_code=status_of(error), headers=error.headers)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return respond(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        error = ServiceError(first.get("msg", "invalid request"), param=param, code="invalid_value")
        error.status, error.type = 400, "invalid_request_error"
        return respond(request, error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = ServiceError(str(exc.detail), code="not_found" if exc.status_code == 404 else "http_error")
        error.status, error.type = exc.status_code, "invalid_request_error"
        return respond(request, error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "?")
        log.exception("unhandled error", extra={"request_id": request_id})
        return respond(request, ServiceError(f"internal error (request id {request_id})"))
