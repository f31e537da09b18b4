"""The webhook deliverer: every replica sends the due deliveries of the outbox table, at least once.

A delivery is claimed with a short lease (so two replicas never send the same attempt at once), sent with
fresh Standard Webhooks headers and the same webhook-id, and then marked delivered (2xx), rescheduled with
the next wait of MEGA_ASR_WEBHOOK_RETRY_SECONDS (non-2xx, timeout, network error), or given up after the
last. The outbox lives in the store, so deliveries pending at a restart go on after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from sqlalchemy import and_, or_, select, update

from app.jobs.schema import webhook_outbox
from app.jobs.store import JobStore, OutboxMessage
from app.jobs.webhooks import Allowed, headers, resolve
from app.metrics import Metrics

log = logging.getLogger("app.jobs.delivery")
_CLAIM_SECONDS = 120.0  # longer than any attempt (timeout) takes


@dataclass(frozen=True)
class DeliveryConfig:
    secret: str
    retry_seconds: Sequence[float]
    timeout_seconds: float
    allowed: Allowed
    poll_seconds: float
    batch: int = 16


async def claim_due(store: JobStore, limit: int) -> list[OutboxMessage]:
    now = time.time()
    due = and_(webhook_outbox.c.status == "pending", webhook_outbox.c.next_attempt_at <= now,
               or_(webhook_outbox.c.lease_expires_at.is_(None), webhook_outbox.c.lease_expires_at < now))
    query = select(webhook_outbox).where(due).order_by(webhook_outbox.c.next_attempt_at).limit(limit)
    if store.postgres:
        query = query.with_for_update(skip_locked=True)
    claimed = []
    async with store.engine.begin() as conn:
        for row in (await conn.execute(query)).all():
            result = await conn.execute(update(webhook_outbox).where(webhook_outbox.c.id == row.id, due)
                                        .values(lease_expires_at=now + _CLAIM_SECONDS))
            if result.rowcount == 1:
                claimed.append(OutboxMessage(row.id, row.job_id, row.url, row.body, row.attempts))
    return claimed


async def record(store: JobStore, message: OutboxMessage, *, delivered: bool, error: str | None,
                 next_attempt_at: float | None) -> None:
    """After an attempt: delivered, retried at `next_attempt_at`, or (None) given up."""
    status = "delivered" if delivered else "pending" if next_attempt_at is not None else "failed"
    values = {"status": status, "attempts": message.attempts + 1, "lease_expires_at": None, "last_error": error}
    if delivered:
        values["delivered_at"] = time.time()
    if next_attempt_at is not None and not delivered:
        values["next_attempt_at"] = next_attempt_at
    async with store.engine.begin() as conn:
        await conn.execute(update(webhook_outbox).where(webhook_outbox.c.id == message.id).values(**values))


class Deliverer:
    def __init__(self, store: JobStore, config: DeliveryConfig, metrics: Metrics) -> None:
        self.store = store
        self.config = config
        self.metrics = metrics
        self.wake = asyncio.Event()  # set when a job ends here: deliver now rather than at the next poll
        self._client = httpx.AsyncClient(timeout=config.timeout_seconds, follow_redirects=False)

    async def run(self) -> None:
        while True:
            try:
                messages = await claim_due(self.store, self.config.batch)
                await asyncio.gather(*(self._attempt(message) for message in messages))
            except asyncio.CancelledError:
                raise
            except Exception:  # the store is unreachable for a moment: try again at the next poll
                log.exception("webhook delivery round failed")
                messages = []
            if len(messages) < self.config.batch:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), self.config.poll_seconds)
                except asyncio.TimeoutError:
                    pass

    async def close(self) -> None:
        await self._client.aclose()

    async def _attempt(self, message: OutboxMessage) -> None:
        error = await self._send(message)
        if error is None:
            self.metrics.webhook_deliveries.labels(outcome="delivered").inc()
            await record(self.store, message, delivered=True, error=None, next_attempt_at=None)
            return
        retries = self.config.retry_seconds
        if message.attempts < len(retries):
            outcome, next_at = "retry", time.time() + retries[message.attempts]
        else:
            outcome, next_at = "failed", None
        if error.startswith("blocked"):
            outcome = "blocked"
        self.metrics.webhook_deliveries.labels(outcome=outcome).inc()
        log.warning("webhook %s for job %s: %s (attempt %d)", message.id, message.job_id, error,
                    message.attempts + 1)
        await record(self.store, message, delivered=False, error=error, next_attempt_at=next_at)

    async def _send(self, message: OutboxMessage) -> str | None:
        """None when delivered, else why not."""
        parts = urlsplit(message.url)
        host = parts.hostname or ""
        try:
            addresses = await asyncio.to_thread(resolve, host, parts.port or (443 if parts.scheme == "https" else 80))
        except OSError as exc:
            return f"cannot resolve {host}: {exc}"
        if not self.config.allowed.addresses_allowed(host, addresses):
            return f"blocked: {host} resolves to {', '.join(addresses)}, outside MEGA_ASR_WEBHOOK_ALLOWED_HOSTS"
        try:
            answer = await self._client.post(message.url, content=message.body.encode(),
                                             headers=headers(self.config.secret, message.id, message.body))
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= answer.status_code < 300:
            return None
        return f"HTTP {answer.status_code}"
