"""Reading and validating the multipart forms of the audio endpoints.

The upload limit is enforced while the body streams in, before it is all in memory: a declared
Content-Length over the limit is refused at once, and a body that grows past it is cut off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import Message

from app.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from app.http.formats import RESPONSE_FORMATS, STREAM_FORMATS
from models.languages import UnknownLanguageError, to_code

_MAX_PROMPT_CHARS = 4000
# Fields OpenAI clients may send that we accept; anything else is a 400 naming the field.
_TRANSCRIPTION_FIELDS = {"file", "model", "language", "prompt", "response_format", "temperature",
                         "timestamp_granularities[]", "timestamp_granularities", "route", "threshold",
                         "stream", "chunking_strategy"}
_QUALITY_FIELDS = {"file", "threshold", "model"}


@dataclass(frozen=True)
class TranscriptionForm:
    upload: UploadFile
    model: str | None
    language: str | None
    prompt: str
    response_format: str
    route: Literal["auto", "base", "robust"]
    threshold: float | None
    stream: bool = False
    words: bool = False  # timestamp_granularities[] includes "word"


@dataclass(frozen=True)
class JobForm:
    """A job's submit form: the transcription fields (parsed as the synchronous form parses them) + its own."""

    transcription: TranscriptionForm
    webhook_url: str | None
    metadata: dict[str, str]


_JOB_FIELDS = {"webhook_url", "metadata"}
_MAX_METADATA_PAIRS, _MAX_METADATA_KEY, _MAX_METADATA_VALUE = 16, 64, 512  # OpenAI's metadata limits


@dataclass(frozen=True)
class QualityForm:
    upload: UploadFile
    threshold: float | None


async def read_form(request: Request, max_bytes: int) -> FormData:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedMediaType("send the audio as multipart/form-data with a `file` field",
                                   param="file", code="invalid_content_type")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"upload of {int(declared)} bytes exceeds the limit of {max_bytes} bytes",
                              param="file")
    limited = Request(request.scope, _limited_receive(request.receive, max_bytes))
    try:
        return await limited.form(max_files=1, max_fields=32)
    except MultiPartException as exc:
        raise InvalidRequest(f"malformed multipart body: {exc.message}", param="file") from exc


def _limited_receive(receive, max_bytes: int):
    received = 0

    async def wrapped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise PayloadTooLarge(f"upload exceeds the limit of {max_bytes} bytes", param="file")
        return message

    return wrapped


def parse_transcription_form(form: FormData) -> TranscriptionForm:
    _reject_unknown(form, _TRANSCRIPTION_FIELDS)
    temperature = _float_field(form, "temperature", 0.0, 1.0)
    if temperature not in (None, 0.0):
        raise InvalidRequest("only greedy decoding is served: temperature must be 0 or absent",
                             param="temperature", code="unsupported_value")
    granularities = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    for value in granularities:
        if value not in ("segment", "word"):
            raise InvalidRequest(f"timestamp granularity {value!r} is not supported; use 'segment' or 'word'",
                                 param="timestamp_granularities[]", code="unsupported_value")
    words = "word" in granularities
    stream = _bool_field(form, "stream")
    response_format = _text_field(form, "response_format", "json")
    if words and not stream and response_format != "verbose_json":
        # As OpenAI: word times come only in verbose_json (or in a stream's final event).
        raise InvalidRequest("timestamp_granularities[]=word needs response_format=verbose_json",
                             param="timestamp_granularities[]", code="invalid_value")
    if response_format not in RESPONSE_FORMATS:
        raise InvalidRequest(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}",
                             param="response_format")
    if stream and response_format not in STREAM_FORMATS:
        raise InvalidRequest(f"stream=true answers with server-sent events: response_format must be "
                             f"{' or '.join(STREAM_FORMATS)}, not {response_format!r}", param="response_format",
                             code="unsupported_value")
    route = _text_field(form, "route", "auto")
    if route not in ("auto", "base", "robust"):
        raise InvalidRequest("route must be auto, base or robust", param="route")
    prompt = _text_field(form, "prompt", "")
    if len(prompt) > _MAX_PROMPT_CHARS:
        raise InvalidRequest(f"prompt is longer than {_MAX_PROMPT_CHARS} characters", param="prompt")
    return TranscriptionForm(upload=_upload(form), model=_text_field(form, "model", "") or None,
                             language=_language(form), prompt=prompt, response_format=response_format,
                             route=route,  # type: ignore[arg-type]
                             threshold=_float_field(form, "threshold", 0.0, 1.0), stream=stream, words=words)


def parse_job_form(form: FormData) -> JobForm:
    """The synchronous form's fields exactly as parse_transcription_form reads them, plus `webhook_url` and
    `metadata` (a JSON object of at most 16 string pairs). `stream` has no meaning for a job."""
    own = FormData([(key, value) for key, value in form.multi_items() if key in _JOB_FIELDS])
    transcription = parse_transcription_form(
        FormData([(key, value) for key, value in form.multi_items() if key not in _JOB_FIELDS]))
    if transcription.stream:
        raise InvalidRequest("a job is not streamed: fetch its transcript when it completes", param="stream",
                             code="unsupported_value")
    webhook_url = _text_field(own, "webhook_url", "") or None
    return JobForm(transcription=transcription, webhook_url=webhook_url, metadata=_metadata(own))


def _metadata(form: FormData) -> dict[str, str]:
    import json

    raw = _text_field(form, "metadata", "")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidRequest("metadata must be a JSON object", param="metadata") from None
    if not isinstance(value, dict) or len(value) > _MAX_METADATA_PAIRS:
        raise InvalidRequest(f"metadata must be a JSON object of at most {_MAX_METADATA_PAIRS} pairs",
                             param="metadata")
    for key, item in value.items():
        if not isinstance(item, str) or len(key) > _MAX_METADATA_KEY or len(item) > _MAX_METADATA_VALUE:
            raise InvalidRequest(f"metadata keys must be strings of at most {_MAX_METADATA_KEY} characters and "
                                 f"values strings of at most {_MAX_METADATA_VALUE}", param="metadata")
    return value


def parse_quality_form(form: FormData) -> QualityForm:
    _reject_unknown(form, _QUALITY_FIELDS)
    return QualityForm(upload=_upload(form), threshold=_float_field(form, "threshold", 0.0, 1.0))


def _reject_unknown(form: FormData, allowed: set[str]) -> None:
    for key in form:
        if key not in allowed:
            raise InvalidRequest(f"unknown field {key!r}", param=key, code="unknown_field")


def _upload(form: FormData) -> UploadFile:
    uploads = form.getlist("file")
    if not uploads:
        raise InvalidRequest("the `file` field is required", param="file", code="missing_field")
    if len(uploads) > 1 or not isinstance(uploads[0], UploadFile):
        raise InvalidRequest("`file` must be exactly one uploaded file", param="file")
    return uploads[0]


def _text_field(form: FormData, name: str, default: str) -> str:
    values = form.getlist(name)
    if not values:
        return default
    if len(values) > 1 or not isinstance(values[0], str):
        raise InvalidRequest(f"`{name}` must be given once, as text", param=name)
    return values[0].strip()


def _bool_field(form: FormData, name: str) -> bool:
    raw = _text_field(form, name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise InvalidRequest(f"`{name}` must be true or false", param=name)
    return raw in ("true", "1")


def _float_field(form: FormData, name: str, low: float, high: float) -> float | None:
    raw = _text_field(form, name, "")
    if raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"`{name}` must be a number", param=name) from None
    if not low <= value <= high:
        raise InvalidRequest(f"`{name}` must be within [{low}, {high}]", param=name)
    return value


def _language(form: FormData) -> str | None:
    raw = _text_field(form, "language", "")
    if not raw:
        return None
    try:
        return to_code(raw)
    except UnknownLanguageError as exc:
        raise InvalidRequest(str(exc), param="language", code="unsupported_language") from None
