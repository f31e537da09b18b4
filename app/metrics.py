"""Every metric the service exports, in one place, on a registry owned by the app (no globals).

Names follow Prometheus conventions: base units in the name (`_seconds`), counters end in `_total`, and a
`route` label (`base` | `robust`) wherever the path taken matters. The Grafana dashboard and the
autoscaler read these names; tests check the dashboard against a live /metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
_BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)
_AUDIO_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 240, 480, 960)
_SCORE_BUCKETS = tuple(i / 10 for i in range(1, 11))
_STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30)


class Metrics:
    """The service's metrics. One instance per app; `registry` is what /metrics exposes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "asr_requests_total", "Answered HTTP requests by endpoint, route taken and status code.",
            ["endpoint", "route", "status"], registry=r)
        self.audio_seconds = Counter(
            "asr_audio_seconds_total", "Seconds of audio transcribed, by route.", ["route"], registry=r)
        self.request_latency = Histogram(
            "asr_request_duration_seconds", "Request latency from upload received to answer.",
            ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self.decode_latency = Histogram(
            "asr_decode_duration_seconds", "Audio decoding and resampling time per request.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram(
            "asr_queue_wait_seconds", "Time a segment waited in the queue before its batch ran.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.inference = Histogram(
            "asr_inference_duration_seconds", "Model time per engine iteration: router and prefill of the "
            "segments that join, then one decode step of every running row.", buckets=_LATENCY_BUCKETS,
            registry=r)
        self.router_time = Histogram(
            "asr_router_duration_seconds", "Router scoring time per iteration in which segments join.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.prefill = Histogram(
            "asr_prefill_duration_seconds", "Prefill time per iteration in which segments join (audio encoder "
            "and prompt of every joining segment; for a segment whose encoder ran ahead, its prompt only).",
            buckets=_STEP_BUCKETS, registry=r)
        self.encoder_ahead = Histogram(
            "asr_encoder_ahead_duration_seconds", "Audio encoder time of one segment that was prepared ahead, "
            "beside the decode steps (on one CPU thread; app/engine/prefill_ahead.py).", buckets=_STEP_BUCKETS,
            registry=r)
        self.decode_step = Histogram(
            "asr_decode_step_seconds", "Time of one decode step of all running rows.", buckets=_STEP_BUCKETS,
            registry=r)
        self.segment_inference = Histogram(
            "asr_segment_inference_seconds", "Time from a segment's prefill to its last token, by route.",
            ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.time_to_first_token = Histogram(
            "asr_time_to_first_token_seconds", "Time from a segment's arrival in the queue to its first "
            "generated token, by route.", ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.generated_tokens = Counter(
            "asr_generated_tokens_total", "Tokens generated, by route (rate() = tokens per second).", ["route"],
            registry=r)
        self.running_rows = Gauge(
            "asr_running_rows", "Segments decoding now (rows of the running batch).", registry=r)
        self.batch_size = Histogram(
            "asr_batch_size", "Segments per prefill group (segments that start decoding together).",
            buckets=_BATCH_SIZE_BUCKETS, registry=r)
        self.batch_audio = Histogram(
            "asr_batch_audio_seconds", "Seconds of audio per prefill group.", buckets=_AUDIO_BUCKETS, registry=r)
        self.batches = Counter(
            "asr_batches_total", "Prefill groups, by route mix (base, robust or mixed).", ["mix"], registry=r)
        self.queue_segments = Gauge(
            "asr_queue_depth_segments", "Segments waiting in the queue.", registry=r)
        self.queue_audio = Gauge(
            "asr_queue_depth_audio_seconds", "Seconds of audio waiting in the queue or admitted and not "
            "yet batched: the autoscaling signal.", registry=r)
        self.inflight = Gauge(
            "asr_inflight_requests", "Requests accepted and not yet answered.", registry=r)
        self.router_score = Histogram(
            "asr_router_score", "P(degraded) per segment as scored by the router.", buckets=_SCORE_BUCKETS,
            registry=r)
        self.route_decisions = Counter(
            "asr_route_decisions_total", "Segments per route and why (router, request, config, language).",
            ["route", "reason"], registry=r)
        self.speech_gate_segments = Counter(
            "asr_speech_gate_segments_total", "Segments by the speech gate's outcome: speech (sent to the "
            "models), silence or no_speech (answered empty without any model time).", ["outcome"], registry=r)
        self.speech_gate_audio_seconds = Counter(
            "asr_speech_gate_audio_seconds_total", "Seconds of audio by the speech gate's outcome (silence and "
            "no_speech are model time saved).", ["outcome"], registry=r)
        self.guarded_segments = Counter(
            "asr_guarded_segments_total", "Recognized segments the hallucination guards acted on, by route, "
            "reason (no_speech, no_words, script, repetition, compression_ratio, low_logprob) and action "
            "(blank, truncate, flag).", ["route", "reason", "action"], registry=r)
        self.alignment = Histogram(
            "asr_alignment_duration_seconds", "Word-time alignment per iteration in which rows that asked for "
            "words ended (guards and one aligner call for all of them).", buckets=_STEP_BUCKETS, registry=r)
        self.aligned_segments = Counter(
            "asr_aligned_segments_total", "Finished segments whose words were timed (word requests).",
            registry=r)
        self.model_load = Gauge(
            "asr_model_load_seconds", "Time to load each model component at startup.", ["component"],
            registry=r)
        self.errors = Counter(
            "asr_errors_total", "Error answers by reason code.", ["reason"], registry=r)
        self.rejected = Counter(
            "asr_rejected_total", "Requests refused by admission control (429) or while not ready (503).",
            ["reason"], registry=r)
        self.cancelled_segments = Counter(
            "asr_cancelled_segments_total", "Queued segments dropped because their client disconnected or "
            "their deadline passed.", registry=r)
        self.model_info = Gauge(
            "asr_model_info", "1 for the loaded profile, with the recognizer's device (cpu, cuda:0), dtype "
            "(float32, bfloat16, float16, int8) and why that dtype (dtype_reason) as labels.",
            ["profile", "device", "dtype", "dtype_reason"], registry=r)
        # --- background jobs (app/jobs) ------------------------------------------------------------
        self.jobs = Gauge(
            "asr_jobs", "Jobs in the store by status (queued, in_progress, completed, failed, cancelled), all "
            "replicas together.", ["status"], registry=r)
        self.job_backlog = Gauge(
            "asr_job_backlog_audio_seconds", "Seconds of job audio not transcribed yet (queued and in-progress "
            "jobs, all replicas together): the autoscaling signal for jobs.", registry=r)
        self.job_duration = Histogram(
            "asr_job_duration_seconds", "Time from a job's submission to its end, by final status.", ["status"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800), registry=r)
        self.webhook_deliveries = Counter(
            "asr_webhook_deliveries_total", "Webhook delivery attempts by outcome: delivered (2xx), retry "
            "(non-2xx, timeout or network error; tried again later), failed (given up), blocked (address not "
            "allowed).", ["outcome"], registry=r)
        self.ready = Gauge("asr_ready", "1 when models are loaded, warmed up and admitting work.",
                           registry=r)
