"""stream=true through a real uvicorn server: OpenAI's transcription events over SSE, to httpx, curl and the
official openai client; long files segment after segment; errors mid-stream; a client that leaves."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading

import httpx
import pytest

from tests.fakes import SteppingRecognizer, tone
from tests.server import metric, poll, wav_bytes


def sse_events(lines) -> list[tuple[str, dict]]:
    """(event name, data) of every server-sent event in an iterable of lines."""
    events, name = [], None
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[len("data: "):])))
    return events


def stream(base: str, seconds: float, **fields) -> tuple[httpx.Response, list[tuple[str, dict]]]:
    with httpx.stream("POST", f"{base}/v1/audio/transcriptions", files={"file": ("a.wav", wav_bytes(tone(seconds)))},
                      data={"stream": "true", **fields}, timeout=60) as answer:
        if answer.status_code != 200:
            answer.read()
            return answer, []
        return answer, sse_events(answer.iter_lines())


def test_deltas_then_done_event(fake_service):
    base, _ = fake_service(SteppingRecognizer())
    answer, events = stream(base, 2.0)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    names = [name for name, _ in events]
    assert names[-1] == "transcript.text.done" and set(names[:-1]) == {"transcript.text.delta"}
    assert len(names) > 3  # one character per step: the text came in pieces
    assert all(data["type"] == name for name, data in events)
    done = events[-1][1]
    assert "".join(data["delta"] for _, data in events[:-1]) == done["text"] == "base 2.0s.."
    assert done["route"] == "base" and done["no_speech"] is False and done["usage"]["type"] == "duration"
    assert metric(base, "asr_inflight_requests") == 0


def test_a_long_file_streams_segment_after_segment(fake_service):
    base, _ = fake_service(SteppingRecognizer(), max_batch_items=8)
    _, events = stream(base, 70.0)  # three segments decoding side by side, streamed in order
    deltas = "".join(data["delta"] for name, data in events if name == "transcript.text.delta")
    done = events[-1][1]
    assert deltas == done["text"]
    pieces = done["text"].split(" ")[1::2]  # the "<seconds>s...." parts of "base <s>s.... base <s>s...."
    assert len(pieces) == 3 and sum(float(p.split("s")[0]) for p in pieces) == pytest.approx(70.0, abs=0.2)


def test_stream_only_with_json_or_text(fake_service):
    base, _ = fake_service(SteppingRecognizer())
    answer, _ = stream(base, 1.0, response_format="srt")
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "response_format"
    answer, events = stream(base, 1.0, response_format="text")
    assert answer.status_code == 200 and events[-1][0] == "transcript.text.done"
    answer, _ = stream(base, 1.0, stream="maybe")
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "stream"


def test_openai_client_streams(fake_service):
    from openai import OpenAI

    base, _ = fake_service(SteppingRecognizer())
    client = OpenAI(base_url=f"{base}/v1", api_key="unused")
    events = list(client.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav_bytes(tone(3.0))),
                                                     stream=True))
    assert [e.type for e in events[:-1]] == ["transcript.text.delta"] * (len(events) - 1)
    assert events[-1].type == "transcript.text.done" and events[-1].text == "base 3.0s..."
    assert "".join(e.delta for e in events[:-1]) == events[-1].text


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed (.ci/run installs it)")
def test_curl_streams(fake_service, tmp_path):
    base, _ = fake_service(SteppingRecognizer())
    clip = tmp_path / "clip.wav"
    clip.write_bytes(wav_bytes(tone(1.0)))
    out = subprocess.run(["curl", "-sN", f"{base}/v1/audio/transcriptions", "-F", f"file=@{clip}",
                          "-F", "stream=true"], capture_output=True, text=True, timeout=60, check=True).stdout
    events = sse_events(out.splitlines())
    assert events[-1] == ("transcript.text.done", events[-1][1]) and events[-1][1]["text"] == "base 1.0s."


def test_an_error_after_the_stream_started_ends_it_with_an_error_event(fake_service):
    from openai import APIError, OpenAI

    def fail_late(keys, steps=[]):  # noqa: B006 - counts calls across the test
        steps.append(1)
        return RuntimeError("the model broke") if len(steps) == 4 else None

    base, _ = fake_service(SteppingRecognizer(fail_step=fail_late), warmup=False)
    _, events = stream(base, 5.0)
    assert [name for name, _ in events[:3]] == ["transcript.text.delta"] * 3
    assert events[-1][0] == "error"
    error = events[-1][1]["error"]
    assert error["code"] == "inference_failed" and error["type"] == "server_error" and error["message"]
    client = OpenAI(base_url=f"{base}/v1", api_key="unused")
    fail_late.__defaults__[0].clear()  # the next stream fails again at its fourth step
    with pytest.raises(APIError, match="inference failed"):
        list(client.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav_bytes(tone(5.0))),
                                                stream=True))


def test_a_client_that_leaves_mid_stream_stops_its_rows(fake_service):
    pace = threading.Semaphore(3)
    recognizer = SteppingRecognizer(pace=pace)
    base, _ = fake_service(recognizer, warmup=False)
    with httpx.stream("POST", f"{base}/v1/audio/transcriptions", files={"file": ("a.wav", wav_bytes(tone(20.0)))},
                      data={"stream": "true"}, timeout=60) as answer:
        lines = answer.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))  # the stream is under way
    pace.release(1000)
    poll(lambda: metric(base, "asr_cancelled_segments_total") == 1, 10, "the row was not cancelled")
    poll(lambda: len(recognizer.cancelled) == 1 and metric(base, "asr_running_rows") == 0, 10,
         "the session still runs the row")
    poll(lambda: metric(base, "asr_inflight_requests") == 0, 10, "the stream still counts as in flight")
