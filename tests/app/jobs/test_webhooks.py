"""Webhooks: Standard Webhooks signatures (checked with the `standardwebhooks` library) against a real HTTP
receiver that fails first and then accepts: the delivery is retried with the same webhook-id."""

from __future__ import annotations

import json

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.errors import InvalidRequest
from app.jobs.webhooks import Allowed, check_url, event_body, headers, sign
from bench.job_receiver import Receiver
from tests.fakes import tone
from tests.server import metric, poll, wav_bytes

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
JOBS = "/v1/audio/transcriptions/jobs"


def test_our_signature_is_the_standard_webhooks_signature():
    body = event_body("job_1", "completed", {"a": "b"}, now=1_700_000_000)
    sent = headers(SECRET, "msg_abc", body, timestamp=1_700_000_000)
    library = Webhook(SECRET)
    assert sent["webhook-signature"] == library.sign("msg_abc", _datetime(1_700_000_000), body)
    assert sent["webhook-signature"] == sign(SECRET, "msg_abc", 1_700_000_000, body)
    assert json.loads(body) == {"type": "transcription.job.completed", "timestamp": "2023-11-14T22:13:20.000Z",
                                "data": {"id": "job_1", "status": "completed", "metadata": {"a": "b"}}}


def _datetime(seconds: int):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def test_the_allow_list_checks_names_networks_and_every_resolved_address():
    allowed = Allowed.parse(["hooks.example.org", "127.0.0.0/8", "::1"])
    assert check_url("https://hooks.example.org/x", allowed)
    assert check_url("http://127.0.0.1:8080/x", allowed)
    with pytest.raises(InvalidRequest):
        check_url("http://10.1.2.3/x", allowed)
    assert allowed.addresses_allowed("other.example.org", ["127.0.0.1"])
    assert not allowed.addresses_allowed("other.example.org", ["127.0.0.1", "10.0.0.1"])  # one outside: no
    assert not allowed.addresses_allowed("other.example.org", [])
    assert Allowed.parse([]).addresses_allowed("anything", ["10.0.0.1"])


def test_a_failed_delivery_is_retried_with_the_same_id_and_every_signature_verifies(fake_service, tmp_path):
    receiver = Receiver([500, 503])
    with receiver.serving():
        url = receiver.url
        base, _ = fake_service(database_url=f"sqlite+aiosqlite:///{tmp_path / 'j.db'}", webhook_secret=SECRET,
                               webhook_retry_seconds="0.2,0.2,0.2", webhook_allowed_hosts="127.0.0.0/8",
                               job_poll_seconds=0.1)
        job = httpx.post(base + JOBS, files={"file": ("a.wav", wav_bytes(tone(1.0)))},
                         data={"webhook_url": url, "metadata": json.dumps({"order": "42"})}).json()
        poll(lambda: len(receiver.calls) >= 3, 30, "the webhook was not retried until accepted")
        assert metric(base, "asr_webhook_deliveries_total", {"outcome": "retry"}) == 2
        assert metric(base, "asr_webhook_deliveries_total", {"outcome": "delivered"}) == 1
    assert [status for _, _, status in receiver.calls] == [500, 503, 200]
    ids = {sent["webhook-id"] for sent, _, _ in receiver.calls}
    assert len(ids) == 1 and ids.pop().startswith("msg_")
    library = Webhook(SECRET)
    for sent, body, _ in receiver.calls:
        payload = library.verify(body, sent)  # raises on a bad signature or a stale timestamp
        assert payload == {"type": "transcription.job.completed", "timestamp": payload["timestamp"],
                           "data": {"id": job["id"], "status": "completed", "metadata": {"order": "42"}}}
    with pytest.raises(WebhookVerificationError):  # a receiver with another secret refuses it
        Webhook("whsec_" + "A" * 32).verify(receiver.calls[0][1], receiver.calls[0][0])


def test_deliveries_pending_at_a_restart_go_out_after_it(fake_service, tmp_path):
    """The first service stops before it could deliver (nobody listens yet); a new one on the same store
    delivers with the same webhook-id."""
    import asyncio

    from sqlalchemy import select, update

    from app.engine.guards import GuardConfig
    from app.engine.pipeline import Pipeline
    from app.jobs.schema import webhook_outbox
    from app.jobs.store import JobStore
    from app.main import create_app
    from tests.app.conftest import fake_settings
    from tests.fakes import FakeRecognizer, FakeRouter
    from tests.server import running

    database = f"sqlite+aiosqlite:///{tmp_path / 'j.db'}"
    settings = {"database_url": database, "webhook_secret": SECRET, "webhook_allowed_hosts": "127.0.0.0/8",
                "job_poll_seconds": 0.1, "webhook_retry_seconds": "3600"}
    pipeline = Pipeline(FakeRecognizer(), FakeRouter(), guards=GuardConfig(enabled=False))
    with running(create_app(fake_settings(**settings), pipeline=pipeline)) as first:
        job = httpx.post(first + JOBS, files={"file": ("a.wav", wav_bytes(tone(1.0)))},
                         data={"webhook_url": "http://127.0.0.1:9/nobody-listens"}).json()
        poll(lambda: metric(first, "asr_webhook_deliveries_total", {"outcome": "retry"}) == 1, 30, "no attempt")

    async def outbox(url: str | None = None) -> list:
        store = await JobStore.open(database)
        async with store.engine.begin() as conn:
            if url is not None:  # the receiver is up now, and the next attempt due now rather than in an hour
                await conn.execute(update(webhook_outbox).values(url=url, next_attempt_at=0))
            rows = (await conn.execute(select(webhook_outbox))).all()
        await store.close()
        return rows

    (pending,) = asyncio.run(outbox())
    assert (pending.status, pending.attempts) == ("pending", 1)
    receiver = Receiver([])
    with receiver.serving():
        url = receiver.url
        asyncio.run(outbox(url))
        fake_service(**settings)
        poll(lambda: len(receiver.calls) == 1, 30, "the pending delivery was not resumed")
    sent, body, _ = receiver.calls[0]
    assert sent["webhook-id"] == pending.id
    assert Webhook(SECRET).verify(body, sent)["data"]["id"] == job["id"]
