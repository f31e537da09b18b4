"""OpenAPI request bodies of the multipart endpoints (parsed by hand to enforce the upload limit while
streaming, so FastAPI cannot infer them). Clients, docs and the schemathesis fuzz read these."""

from __future__ import annotations

_FILE = {"type": "string", "format": "binary", "description": "Audio file: wav, flac, ogg, mp3, m4a, webm..."}


def _multipart(properties: dict) -> dict:
    """A required multipart/form-data request body with a `file` field and these properties."""
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "properties": properties}}}}


_TRANSCRIPTION_FIELDS = {
    "file": _FILE,
    "model": {"type": "string", "description": "Accepted and ignored (one model is served)."},
    "language": {"type": "string", "description": "ISO 639-1 code or English name."},
    "prompt": {"type": "string", "maxLength": 4000, "description": "Context / hotwords."},
    "response_format": {"type": "string",
                        "enum": ["json", "text", "srt", "verbose_json", "vtt"]},
    "temperature": {"type": "number", "minimum": 0, "maximum": 0,
                    "description": "Greedy decoding only: 0 or absent."},
    "timestamp_granularities[]": {"type": "array", "items": {"type": "string",
                                                              "enum": ["segment", "word"]},
                                  "description": "word: `words` in verbose_json (or in a "
                                                 "stream's final event)."},
    "route": {"type": "string", "enum": ["auto", "base", "robust"],
              "description": "auto = the router decides per segment."},
    "threshold": {"type": "number", "minimum": 0, "maximum": 1,
                  "description": "Router threshold for this request."},
}

TRANSCRIPTION_BODY = {
    "requestBody": _multipart(_TRANSCRIPTION_FIELDS),
    "responses": {
        "200": {"description": "Transcript (json, verbose_json) or text (text, srt, vtt)."},
        "400": {"description": "Invalid field or undecodable audio."},
        "401": {"description": "Missing or invalid API key."},
        "413": {"description": "Upload or audio too long."},
        "415": {"description": "Not audio."},
        "429": {"description": "Overloaded; see Retry-After."},
        "503": {"description": "Loading or draining."},
        "504": {"description": "Deadline exceeded."},
    },
}

QUALITY_BODY = {
    "requestBody": _multipart({"file": _FILE, "threshold": {"type": "number", "minimum": 0, "maximum": 1}}),
}

JOB_BODY = {
    "requestBody": _multipart({
        **_TRANSCRIPTION_FIELDS,
        "webhook_url": {"type": "string", "format": "uri", "description": "Called (Standard Webhooks) when the "
                        "job completes, fails or is cancelled."},
        "metadata": {"type": "string", "description": "JSON object of at most 16 string pairs, echoed."},
    }),
    "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"},
                    "description": "A retried submit with the same key and request returns the same job."}],
    "responses": {
        "202": {"description": "The job object; Location names it."},
        "409": {"description": "Idempotency-Key reused with a different request."},
        "429": {"description": "The job backlog is full (MEGA_ASR_JOB_MAX_BACKLOG_HOURS); see Retry-After."},
        **{status: answer for status, answer in TRANSCRIPTION_BODY["responses"].items()
           if status in ("400", "401", "413", "415", "503")},
    },
}
