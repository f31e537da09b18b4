"""Pure ASGI middleware: a request id on every request, response and log line, plus per-request metrics.

Pure ASGI (not BaseHTTPMiddleware) so the endpoint still sees the client's disconnect.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import Metrics

log = logging.getLogger("app.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ENDPOINTS = {"/v1/audio/transcriptions": "transcriptions", "/v1/audio/quality": "quality",
              "/v1/audio/transcriptions/jobs": "jobs"}  # job submits and lists (a job's own paths are not)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, state, status, time.perf_counter() - started, request_id)

    def _record(self, scope: Scope, state: dict, status: int, elapsed: float, request_id: str) -> None:
        endpoint = _ENDPOINTS.get(scope.get("path", ""))
        if endpoint is not None:
            route = state.get("route", "none")
            self.metrics.requests.labels(endpoint=endpoint, route=route, status=str(status)).inc()
            self.metrics.request_latency.labels(endpoint=endpoint).observe(elapsed)
            log.info("request", extra={"request_id": request_id, "endpoint": endpoint, "status": status,
                                       "route": route, "seconds": round(elapsed, 4),
                                       "audio_seconds": state.get("audio_seconds")})


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _SAFE_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex
