"""Response bodies for each `response_format` of /v1/audio/transcriptions (OpenAI's contract)."""

from __future__ import annotations

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from app.engine.transcript import Transcript
from models.languages import LANGUAGE_NAMES

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
STREAM_FORMATS = ("json", "text")  # stream=true: server-sent events (OpenAI streams these two only)


def language_name(code: str | None) -> str | None:
    """OpenAI answers languages as lower-case English names ("english")."""
    if code is None:
        return None
    return LANGUAGE_NAMES.get(code, code).lower()


def as_json(t: Transcript) -> dict:
    return {
        "text": t.text,
        "language": language_name(t.language),
        "duration": round(t.duration, 3),
        "route": t.route,
        "router_score": None if t.router_score is None else round(t.router_score, 4),
        "no_speech": t.no_speech,
        "flags": list(t.flags),
        "usage": {"type": "duration", "seconds": max(1, round(t.duration))},
    }


def words_json(t: Transcript) -> list[dict]:
    """OpenAI's `words`: {"word", "start", "end"}, plus `probability` where the model gives one."""
    return [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3),
             **({"probability": round(w.probability, 4)} if w.probability is not None else {})}
            for w in t.words or ()]


def as_verbose_json(t: Transcript) -> dict:
    body = as_json(t)
    body["task"] = "transcribe"
    if t.words is not None:
        body["words"] = words_json(t)
    body["segments"] = [
        {"id": s.id, "seek": 0, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.text,
         "tokens": [], "temperature": 0.0, "route": s.route,
         "router_score": None if s.router_score is None else round(s.router_score, 4),
         "no_speech": s.no_speech, "flags": list(s.flags)}
        for s in t.segments
    ]
    return body


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def as_srt(t: Transcript) -> str:
    blocks = [f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{_cue_text(s.text)}\n"
              for i, s in enumerate(t.spoken, start=1)]
    return "\n".join(blocks)


def as_vtt(t: Transcript) -> str:
    cues = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{_cue_text(s.text)}\n" for s in t.spoken]
    return "WEBVTT\n\n" + "\n".join(cues)


def _cue_text(text: str) -> str:
    # A blank line ends a cue in both formats, and "-->" would be read as a timing line.
    return " ".join(text.split()).replace("-->", "->")


def as_text(t: Transcript) -> str:
    return t.text + "\n" if t.text else ""


def response_for(transcript: Transcript, response_format: str) -> Response:
    """The HTTP answer of a transcript in `response_format` (the synchronous endpoint's and a job's)."""
    if response_format == "json":
        return JSONResponse(as_json(transcript))
    if response_format == "verbose_json":
        return JSONResponse(as_verbose_json(transcript))
    if response_format == "srt":
        return PlainTextResponse(as_srt(transcript), media_type="application/x-subrip")
    if response_format == "vtt":
        return PlainTextResponse(as_vtt(transcript), media_type="text/vtt")
    return PlainTextResponse(as_text(transcript))
