"""`stream=true` on /v1/audio/transcriptions: OpenAI's transcription stream as server-sent events.

    event: transcript.text.delta
    data: {"type": "transcript.text.delta", "delta": "..."}          (as the text is decoded)

    event: transcript.text.done
    data: {"type": "transcript.text.done", "text": "...", ...}       (the final transcript)

Long files stream segment after segment, in order. The deltas are the text as decoded; `done.text` is the
transcript as the non-streaming answer would give it (after the service's checks), so a client that stores
transcripts stores `done.text`. An error after the stream started ends it with an `error` event in OpenAI's
envelope ({"error": {...}}, which the openai SDK raises). A client that goes away stops its rows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable

from fastapi import Request
from fastapi.responses import StreamingResponse

from app.audio.decoding import DecodedAudio
from app.engine.transcript import Transcript
from app.engine.transcription import TranscriptionOptions
from app.errors import DeadlineExceeded, ServiceError
from app.http import formats
from app.http.errors import envelope
from app.state import ServiceState

log = logging.getLogger("app.http.streaming")
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def done_event(transcript: Transcript) -> str:
    body = formats.as_json(transcript)
    if transcript.words is not None:  # asked for with timestamp_granularities[]=word
        body["words"] = formats.words_json(transcript)
    return event("transcript.text.done", {"type": "transcript.text.done", **body})


class TranscriptStream(StreamingResponse):
    """The event stream; `on_close` runs when the response is over, however it ended (the request counts
    as in flight until then: a drain waits for streams too)."""

    def __init__(self, events: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(events, media_type="text/event-stream", headers=_HEADERS)
        self._events = events
        self._on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._events.aclose()  # a client gone mid-stream: stop its rows now, not at garbage collection
            self._on_close()


def streaming_response(request: Request, state: ServiceState, audio: DecodedAudio, options: TranscriptionOptions,
                       deadline: float, on_close: Callable[[], None]) -> TranscriptStream:
    """`deadline`: time.monotonic() by which the transcript must be done."""
    return TranscriptStream(_events(request, state, audio, options, deadline), on_close)


async def _events(request: Request, state: ServiceState, audio: DecodedAudio, options: TranscriptionOptions,
                  deadline: float) -> AsyncIterator[str]:
    deltas: asyncio.Queue[str] = asyncio.Queue()
    work = asyncio.ensure_future(state.transcriber.transcribe(request.state.request_id, audio, options,
                                                             on_text=deltas.put_nowait))
    gone = asyncio.ensure_future(client_disconnected(request))
    try:
        while True:
            getter = asyncio.ensure_future(deltas.get())
            done, _ = await asyncio.wait({getter, work, gone}, timeout=max(0.0, deadline - time.monotonic()),
                                         return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield _delta(getter.result())
                continue
            getter.cancel()
            if gone in done:
                request.state.route = "cancelled"
                return
            if work not in done:
                raise DeadlineExceeded("the request did not finish within the configured deadline")
            while not deltas.empty():
                yield _delta(deltas.get_nowait())
            transcript = work.result()
            request.state.route = transcript.route
            yield done_event(transcript)
            return
    except ServiceError as error:
        state.metrics.errors.labels(reason=error.code).inc()
        yield event("error", envelope(error))
    except Exception:  # the stream has started: the error can only go out as an event
        log.exception("streaming transcription failed", extra={"request_id": request.state.request_id})
        error = ServiceError(f"internal error (request id {request.state.request_id})")
        state.metrics.errors.labels(reason=error.code).inc()
        yield event("error", envelope(error))
    finally:
        gone.cancel()
        if not work.done():
            work.cancel()  # its segments leave the queue and the running rows
        await asyncio.gather(work, gone, return_exceptions=True)


def _delta(text: str) -> str:
    return event("transcript.text.delta", {"type": "transcript.text.delta", "delta": text})


async def client_disconnected(request: Request) -> bool:
    # The body has been read, so the next ASGI message can only be the disconnect.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return True
