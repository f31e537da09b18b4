"""The HTTP contract on a real uvicorn server with a fake pipeline: formats, routes, errors, metrics."""

from __future__ import annotations

import concurrent.futures
import itertools
import re

import httpx
import numpy as np

from tests.fakes import tone
from tests.server import metric, wav_bytes

QUIET, LOUD = 0.1, 0.9  # the fake router scores a clip by its peak level: quiet -> base, loud -> robust


def post(base: str, audio: np.ndarray, **fields) -> httpx.Response:
    return httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("clip.wav", wav_bytes(audio))},
                      data={k: str(v) for k, v in fields.items()}, timeout=60)


def test_json_answer_has_route_score_and_usage(fake_service):
    base, _ = fake_service()
    body = post(base, tone(2.0, LOUD), model="whisper-1").json()
    assert body["text"] == "robust 2.0s"
    assert body["route"] == "robust" and abs(body["router_score"] - LOUD) < 0.01
    assert body["language"] == "english" and abs(body["duration"] - 2.0) < 0.01
    assert body["usage"] == {"type": "duration", "seconds": 2}


def test_route_and_threshold_overrides(fake_service):
    base, _ = fake_service()
    assert post(base, tone(1.0, QUIET)).json()["route"] == "base"
    assert post(base, tone(1.0, QUIET), threshold=0.05).json()["route"] == "robust"
    assert post(base, tone(1.0, LOUD), route="base").json()["route"] == "base"
    assert post(base, tone(1.0, QUIET), route="robust").json()["text"] == "robust 1.0s"


def test_long_file_is_segmented_and_reassembled_with_global_timestamps(fake_service):
    base, recognizer = fake_service()
    # 70 s: quiet speech-like tone bursts with pauses, the middle stretch loud (degraded)
    parts = [tone(25.0, QUIET), np.zeros(8000, np.float32), tone(25.0, LOUD), np.zeros(8000, np.float32),
             tone(19.0, QUIET)]
    body = post(base, np.concatenate(parts), response_format="verbose_json").json()
    segments = body["segments"]
    assert len(segments) == 3 and body["route"] == "mixed"
    assert [s["route"] for s in segments] == ["base", "robust", "base"]
    assert segments[0]["start"] == 0.0 and abs(segments[-1]["end"] - 70.0) < 0.05
    for left, right in itertools.pairwise(segments):
        assert abs(left["end"] - right["start"]) < 1e-6  # contiguous: nothing lost, nothing doubled
    assert body["router_score"] == max(s["router_score"] for s in segments)
    assert sum(len(b) for b in recognizer.batches) >= 3


def test_subtitle_and_text_formats(fake_service):
    base, _ = fake_service()
    audio = np.concatenate([tone(20.0, QUIET), np.zeros(8000, np.float32), tone(20.0, QUIET)])
    srt = post(base, audio, response_format="srt").text
    assert re.fullmatch(r"1\n00:00:00,000 --> 00:00:\d\d,\d{3}\nbase [\d.]+s\n\n2\n00:00:\d\d,\d{3} --> "
                        r"00:00:\d\d,\d{3}\nbase [\d.]+s\n", srt), srt
    vtt = post(base, audio, response_format="vtt")
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT\n\n00:00:00.000 --> ")
    text = post(base, tone(1.0, QUIET), response_format="text")
    assert text.text == "base 1.0s\n" and text.headers["content-type"].startswith("text/plain")


def test_concurrent_requests_share_batches(fake_service):
    base, _recognizer = fake_service(max_batch_wait_ms=300.0, max_batch_items=8)
    # The warm-up (one segment per route) went through the batcher before readiness.
    warm_segments, warm_groups = metric(base, "asr_batch_size_sum"), metric(base, "asr_batch_size_count")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: post(base, tone(1.0, QUIET if i % 2 else LOUD)), range(8)))
    assert all(a.status_code == 200 for a in answers)
    batches = metric(base, "asr_batch_size_count") - warm_groups
    assert metric(base, "asr_batch_size_sum") - warm_segments == 8
    assert batches < 8, "requests were not batched together"
    assert metric(base, "asr_batches_total", {"mix": "mixed"}) >= 1


def test_metrics_move_per_route(fake_service):
    base, _ = fake_service()
    post(base, tone(2.0, LOUD))
    post(base, tone(3.0, QUIET))
    assert metric(base, "asr_audio_seconds_total", {"route": "robust"}) == 2.0
    assert metric(base, "asr_audio_seconds_total", {"route": "base"}) == 3.0
    assert metric(base, "asr_requests_total", {"route": "robust", "status": "200"}) == 1
    assert metric(base, "asr_route_decisions_total", {"route": "base", "reason": "router"}) == 1
    assert metric(base, "asr_router_score_count") == 2


def test_silence_is_empty_text_without_running_the_model(fake_service):
    base, recognizer = fake_service()
    before = len(recognizer.batches)
    body = post(base, np.zeros(32000, np.float32)).json()
    assert body["text"] == "" and body["no_speech"] is True and body["route"] == "none"
    assert len(recognizer.batches) == before


def test_quality_endpoint(fake_service):
    base, _ = fake_service()
    answer = httpx.post(f"{base}/v1/audio/quality", files={"file": ("a.wav", wav_bytes(tone(1.5, LOUD)))})
    body = answer.json()
    assert answer.status_code == 200 and body["route"] == "robust" and abs(body["duration"] - 1.5) < 0.01


def test_models_health_and_request_id(fake_service):
    base, _ = fake_service()
    card = httpx.get(f"{base}/v1/models").json()["data"][0]
    assert (card["id"], card["device"], card["dtype"]) == ("mega-asr", "unknown", "unknown")  # a fake pipeline
    assert httpx.get(f"{base}/healthz").status_code == 200
    answer = httpx.get(f"{base}/readyz", headers={"X-Request-ID": "abc-123"})
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "abc-123"


def error_of(answer: httpx.Response) -> dict:
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_field_errors_name_the_field(fake_service):
    base, _ = fake_service()
    cases = [({"temperature": "0.7"}, "temperature"), ({"response_format": "xml"}, "response_format"),
             ({"route": "fast"}, "route"), ({"threshold": "2"}, "threshold"), ({"language": "klingon"}, "language"),
             ({"bogus": "1"}, "bogus"), ({"timestamp_granularities[]": "word"}, "timestamp_granularities[]")]
    for fields, param in cases:
        answer = post(base, tone(1.0), **fields)
        assert answer.status_code == 400, fields
        assert error_of(answer)["param"] == param
    missing = httpx.post(f"{base}/v1/audio/transcriptions", data={"model": "x"},
                         files={"other": ("a.wav", b"RIFF")})
    assert missing.status_code == 400


def test_language_no_path_supports_is_400(fake_service):
    from tests.fakes import FakeRecognizer

    base, _ = fake_service(FakeRecognizer(languages_base=frozenset({"en"}), languages_robust=frozenset({"en"})))
    answer = post(base, tone(1.0), language="de")
    assert answer.status_code == 400 and error_of(answer)["param"] == "language"


def test_upload_limit_is_413_and_non_audio_is_415(fake_service):
    base, _ = fake_service(max_upload_bytes=64 * 1024)
    big = post(base, tone(5.0))
    assert big.status_code == 413 and error_of(big)["code"] == "payload_too_large"
    text = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("a.txt", b"hello, this is text" * 10)})
    assert text.status_code == 415
    json_body = httpx.post(f"{base}/v1/audio/transcriptions", json={"file": "x"})
    assert json_body.status_code == 415


def test_api_keys(fake_service):
    base, _ = fake_service(api_keys="k1,k2")
    assert post(base, tone(1.0)).status_code == 401
    answer = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("a.wav", wav_bytes(tone(1.0)))},
                        headers={"Authorization": "Bearer k2"})
    assert answer.status_code == 200
    wrong = httpx.get(f"{base}/v1/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and error_of(wrong)["type"] == "authentication_error"
    assert httpx.get(f"{base}/healthz").status_code == 200  # probes need no key
