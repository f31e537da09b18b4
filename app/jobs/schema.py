"""The job store's tables (SQLAlchemy Core). The migrations (app/jobs/migrations) create them; this module is
what the queries are written against. Times are Unix seconds (float), the same on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
                        BigInteger,
                        Column,
                        Float,
                        ForeignKey,
                        Index,
                        Integer,
                        LargeBinary,
                        MetaData,
                        String,
                        Table,
                        Text,
                        UniqueConstraint,
)

metadata = MetaData()

jobs = Table(
    "jobs", metadata,
    Column("id", String(40), primary_key=True),
    Column("owner", String(64), nullable=False),  # hash of the API key that created it ("" without keys)
    Column("status", String(16), nullable=False),  # uploading | queued | in_progress | completed | failed | cancelled
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("completed_at", Float),
    Column("filename", String(255)),
    Column("options", Text, nullable=False),  # JSON: the transcription fields
    Column("meta", Text, nullable=False),  # JSON: the client's metadata
    Column("webhook_url", Text),
    Column("error", Text),  # JSON: the error envelope's inner object
    Column("audio_bytes", BigInteger, nullable=False, default=0),
    Column("audio_seconds_total", Float),  # from the file's header at submit (None when it does not say)
    Column("audio_seconds_done", Float, nullable=False, default=0.0),
    Column("duration", Float),  # the decoded length, known when the job completes
    Column("lease_owner", String(128)),
    Column("lease_expires_at", Float),
    Column("attempts", Integer, nullable=False, default=0),  # claims so far
    Column("completed_by", String(128)),  # the replica that finished it
    Column("idempotency_key", String(255)),
    Column("fingerprint", String(64)),  # sha256 of the submitted fields and file
    UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
    Index("ix_jobs_status_created", "status", "created_at"),
    Index("ix_jobs_owner_created", "owner", "created_at"),
)

job_audio = Table(
    "job_audio", metadata,
    Column("job_id", String(40), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

job_segments = Table(
    "job_segments", metadata,
    Column("job_id", String(40), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("start_sample", BigInteger, nullable=False),
    Column("end_sample", BigInteger, nullable=False),
    Column("outcome", String(16), nullable=False),  # the speech gate's: speech | silence | no_speech
    Column("result", Text),  # JSON of the SegmentResult (app/jobs/codec.py); None without speech
)

webhook_outbox = Table(
    "webhook_outbox", metadata,
    Column("id", String(40), primary_key=True),  # the webhook-id, the same on every attempt
    Column("job_id", String(40), nullable=False),
    Column("url", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_expires_at", Float),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float),
    Index("ix_webhook_outbox_due", "status", "next_attempt_at"),
)
