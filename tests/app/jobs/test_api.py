"""The job endpoints on a real server with a fake pipeline: submit, poll, transcript (equal to the
synchronous answer), list, ownership, idempotency, cancel, delete, and every bad input."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.fakes import tone
from tests.server import poll, wav_bytes

JOBS = "/v1/audio/transcriptions/jobs"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def long_clip() -> bytes:
    """70 s of tones at two levels (routes), so the job has several segments on both paths."""
    return wav_bytes(np.concatenate([tone(40.0, level=0.2), tone(30.0, level=0.8, freq=330.0)]))


def submit(base: str, audio: bytes, headers: dict | None = None, **fields) -> httpx.Response:
    return httpx.post(base + JOBS, files={"file": ("a.wav", audio, "audio/wav")}, data=fields,
                      headers=headers or {}, timeout=60)


def wait_done(base: str, job_id: str, headers: dict | None = None) -> dict:
    state = {}

    def finished() -> bool:
        state.update(httpx.get(f"{base}{JOBS}/{job_id}", headers=headers or {}).json())
        return state["status"] in ("completed", "failed", "cancelled")

    poll(finished, 60, f"job {job_id} did not finish")
    return state


def test_a_job_completes_and_its_transcript_is_the_synchronous_answer(fake_service, database_url):
    base, _ = fake_service(database_url=database_url)
    audio = long_clip()
    answer = submit(base, audio, language="en", metadata=json.dumps({"customer": "c1"}),
                    **{"timestamp_granularities[]": "segment"})
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert answer.headers["location"] == f"{JOBS}/{job['id']}"
    assert job["object"] == "transcription.job" and job["id"].startswith("job_")
    assert job["status"] in ("queued", "in_progress") and job["metadata"] == {"customer": "c1"}
    assert job["progress"]["audio_seconds_total"] == pytest.approx(70.0)
    done = wait_done(base, job["id"])
    assert done["status"] == "completed" and done["error"] is None, done
    assert done["duration"] == pytest.approx(70.0) and done["progress"]["audio_seconds_done"] == pytest.approx(70.0)
    assert done["completed_at"] >= done["started_at"] >= done["created_at"]
    for response_format in ("json", "text", "srt", "vtt", "verbose_json"):
        sync = httpx.post(base + "/v1/audio/transcriptions", files={"file": ("a.wav", audio)},
                          data={"language": "en", "response_format": response_format,
                                "timestamp_granularities[]": "segment"}, timeout=60)
        got = httpx.get(f"{base}{JOBS}/{job['id']}/transcript", params={"response_format": response_format})
        assert got.status_code == sync.status_code == 200
        assert got.content == sync.content, response_format
        assert got.headers["content-type"] == sync.headers["content-type"]
    segments = httpx.get(f"{base}{JOBS}/{job['id']}/transcript?response_format=verbose_json").json()["segments"]
    assert len(segments) >= 3 and {s["route"] for s in segments} == {"base", "robust"}


def test_lists_pages_newest_first_and_filters_by_status(fake_service, tmp_path):
    base, _ = fake_service(database_url=f"sqlite+aiosqlite:///{tmp_path / 'j.db'}")
    ids = [submit(base, wav_bytes(tone(1.0))).json()["id"] for _ in range(5)]
    for job_id in ids:
        wait_done(base, job_id)
    page = httpx.get(base + JOBS, params={"limit": 2}).json()
    assert page["object"] == "list" and [j["id"] for j in page["data"]] == ids[::-1][:2]
    assert page["has_more"] and page["first_id"] == ids[-1] and page["last_id"] == ids[-2]
    rest = httpx.get(base + JOBS, params={"limit": 10, "after": page["last_id"]}).json()
    assert [j["id"] for j in rest["data"]] == ids[::-1][2:] and not rest["has_more"]
    assert len(httpx.get(base + JOBS, params={"status": "completed"}).json()["data"]) == 5
    assert httpx.get(base + JOBS, params={"status": "queued"}).json()["data"] == []


def test_a_job_belongs_to_the_key_that_created_it(fake_service, tmp_path):
    base, _ = fake_service(database_url=f"sqlite+aiosqlite:///{tmp_path / 'j.db'}", api_keys="key-a,key-b")
    a, b = {"Authorization": "Bearer key-a"}, {"Authorization": "Bearer key-b"}
    job = submit(base, wav_bytes(tone(1.0)), headers=a).json()
    wait_done(base, job["id"], a)
    for path in ("", "/transcript"):
        other = httpx.get(f"{base}{JOBS}/{job['id']}{path}", headers=b)
        assert other.status_code == 404 and other.json()["error"]["code"] == "job_not_found"
    assert httpx.post(f"{base}{JOBS}/{job['id']}/cancel", headers=b).status_code == 404
    assert httpx.delete(f"{base}{JOBS}/{job['id']}", headers=b).status_code == 404
    assert httpx.get(base + JOBS, headers=b).json()["data"] == []
    assert [j["id"] for j in httpx.get(base + JOBS, headers=a).json()["data"]] == [job["id"]]
    wrong = httpx.get(base + JOBS, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"


def test_an_idempotency_key_returns_the_same_job_and_refuses_another_request(fake_service, tmp_path):
    base, _ = fake_service(database_url=f"sqlite+aiosqlite:///{tmp_path / 'j.db'}")
    audio = wav_bytes(tone(1.0))
    first = submit(base, audio, headers={"Idempotency-Key": "k1"}, language="en")
    again = submit(base, audio, headers={"Idempotency-Key": "k1"}, language="en")
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    other = submit(base, wav_bytes(tone(2.0)), headers={"Idempotency-Key": "k1"}, language="en")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(httpx.get(base + JOBS).json()["data"]) == 1


def test_cancel_stops_a_running_job_and_delete_removes_it(fake_service, tmp_path):
    import threading

    from tests.fakes import FakeRecognizer

    gate = threading.Event()
    recognizer = FakeRecognizer(languages_robust=frozenset({"en"}), gate=gate)
    gate.set()  # the warm-up passes
    base, _ = fake_service(recognizer, database_url=f"sqlite+aiosqlite:///{tmp_path / 'j.db'}")
    gate.clear()
    job = submit(base, long_clip()).json()
    poll(lambda: httpx.get(f"{base}{JOBS}/{job['id']}").json()["status"] == "in_progress", 30, "never started")
    early = httpx.get(f"{base}{JOBS}/{job['id']}/transcript")
    assert early.status_code == 409 and early.json()["error"]["code"] == "job_not_completed"
    cancelled = httpx.post(f"{base}{JOBS}/{job['id']}/cancel")
    gate.set()
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = httpx.post(f"{base}{JOBS}/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_already_finished"
    assert httpx.get(f"{base}{JOBS}/{job['id']}").json()["status"] == "cancelled"
    deleted = httpx.delete(f"{base}{JOBS}/{job['id']}")
    assert deleted.json() == {"id": job["id"], "object": "transcription.job.deleted", "deleted": True}
    assert httpx.get(f"{base}{JOBS}/{job['id']}").status_code == 404


def test_submits_get_a_429_while_the_backlog_is_full_and_are_accepted_once_it_drains(fake_service, tmp_path):
    import threading

    from tests.fakes import FakeRecognizer

    gate = threading.Event()
    recognizer = FakeRecognizer(languages_robust=frozenset({"en"}), gate=gate)
    gate.set()  # the warm-up passes
    base, _ = fake_service(recognizer, database_url=f"sqlite+aiosqlite:///{tmp_path / 'j.db'}",
                           job_max_backlog_hours=60 / 3600)  # one minute of audio waiting fills it
    gate.clear()
    try:
        first = submit(base, long_clip())  # 70 s: accepted, the backlog was empty
        assert first.status_code == 202
        refused = submit(base, wav_bytes(tone(1.0)))
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
        assert refused.json()["error"]["code"] == "overloaded" and "backlog" in refused.json()["error"]["message"]
        assert [j["id"] for j in httpx.get(base + JOBS).json()["data"]] == [first.json()["id"]]  # nothing stored
    finally:
        gate.set()
    assert wait_done(base, first.json()["id"])["status"] == "completed"
    assert submit(base, wav_bytes(tone(1.0))).status_code == 202


@pytest.mark.parametrize(("fields", "param", "code"), [
    ({"webhook_url": "ftp://example.org/hook"}, "webhook_url", "invalid_value"),
    ({"webhook_url": "not a url"}, "webhook_url", "invalid_value"),
    ({"webhook_url": "http://user:pw@example.org/"}, "webhook_url", "invalid_value"),
    ({"webhook_url": "http://10.0.0.1/hook"}, "webhook_url", "webhook_host_not_allowed"),
    ({"metadata": "{not json"}, "metadata", "invalid_value"),
    ({"metadata": json.dumps([1, 2])}, "metadata", "invalid_value"),
    ({"metadata": json.dumps({f"k{i}": "v" for i in range(17)})}, "metadata", "invalid_value"),
    ({"metadata": json.dumps({"k": 1})}, "metadata", "invalid_value"),
    ({"stream": "true"}, "stream", "unsupported_value"),
    ({"timestamp_granularities[]": "char"}, "timestamp_granularities[]", "unsupported_value"),
    ({"timestamp_granularities[]": "word"}, "timestamp_granularities[]", "invalid_value"),  # needs verbose_json
    ({"timestamp_granularities[]": "word", "response_format": "verbose_json"}, "timestamp_granularities[]",
     "word_timestamps_unavailable"),  # this deployment has no aligner
    ({"route": "fast"}, "route", "invalid_value"),
    ({"surprise": "1"}, "surprise", "unknown_field"),
])
def test_bad_submits_get_a_clear_400(fake_service, tmp_path, fields, param, code):
    base, _ = fake_service(database_url=f"sqlite+aiosqlite:///{tmp_path / 'j.db'}", webhook_secret=SECRET,
                           webhook_allowed_hosts="127.0.0.1,hooks.example.org")
    answer = submit(base, wav_bytes(tone(1.0)), **fields)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param and answer.json()["error"]["code"] == code
    assert httpx.get(base + JOBS).json()["data"] == []  # nothing was queued


def test_unknown_ids_not_audio_and_webhooks_without_a_secret(fake_service, tmp_path):
    base, _ = fake_service(database_url=f"sqlite+aiosqlite:///{tmp_path / 'j.db'}")
    for method, path in (("GET", ""), ("GET", "/transcript"), ("POST", "/cancel"), ("DELETE", "")):
        answer = httpx.request(method, f"{base}{JOBS}/job_missing{path}")
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "job_not_found"
    text = submit(base, b"hello, this is not audio at all" * 20)
    assert text.status_code == 415 and text.json()["error"]["code"] == "unsupported_media_type"
    empty = submit(base, b"")
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "empty_file"
    hook = submit(base, wav_bytes(tone(1.0)), webhook_url="http://127.0.0.1:9/hook")
    assert hook.status_code == 400 and hook.json()["error"]["code"] == "webhooks_not_configured"
    bad_list = httpx.get(base + JOBS, params={"limit": 0})
    assert bad_list.status_code == 400 and bad_list.json()["error"]["param"] == "limit"
    assert httpx.get(base + JOBS, params={"after": "job_missing"}).status_code == 400


def test_a_corrupt_upload_fails_its_job_with_invalid_audio_and_harms_no_other(fake_service, tmp_path):
    base, _ = fake_service(database_url=f"sqlite+aiosqlite:///{tmp_path / 'j.db'}")
    good = wav_bytes(tone(3.0))
    corrupt = np.random.default_rng(0).bytes(4000)  # the bad-input table's cases the sync endpoint refuses
    flac = io.BytesIO()
    sf.write(flac, tone(2.0), 16_000, format="FLAC")
    truncated = flac.getvalue()[:300]
    ids = [submit(base, audio).json()["id"] for audio in (corrupt, good, truncated, good)]
    states = [wait_done(base, job_id) for job_id in ids]
    assert [s["status"] for s in states] == ["failed", "completed", "failed", "completed"], states
    for state in (states[0], states[2]):
        assert state["error"]["code"] == "invalid_audio" and state["error"]["type"] == "invalid_request_error"
    assert httpx.get(f"{base}{JOBS}/{ids[1]}/transcript?response_format=text").text == "base 3.0s\n"
