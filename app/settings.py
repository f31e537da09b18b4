"""The one settings class of the service. Every field reads from the environment as MEGA_ASR_<FIELD>.

The README's configuration table is generated from this class (`python -m app.cli settings-table`), so
the descriptions here are the documentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "mega-asr"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEGA_ASR_", extra="ignore", frozen=True)

    # --- what to serve -------------------------------------------------------------------------------
    profile: Literal["production", "demo", "tests"] = Field(
        "demo", description="production = Qwen3-ASR-1.7B + Mega-ASR LoRA + official router; demo = Whisper "
        "tiny.en (clean) / base (degraded) from PyPI + the shipped demo router; tests = tiny random models.")
    model_dir: Path = Field(
        Path("/models/Mega-ASR"), description="production: local directory laid out like the Hub repo "
        "zhifeixie/Mega-ASR (Qwen3-ASR-1.7B/, mega-asr-merged/, audio_quality_router/). Filled by "
        "`mega-asr-server download`; the service itself never downloads.")
    backbone_dir: Path | None = Field(
        None, description="production: use this backbone directory instead of <model_dir>/Qwen3-ASR-1.7B "
        "(either the original thinker.* layout or the -hf layout).")
    router_path: Path | None = Field(
        None, description="Router checkpoint (.safetensors or legacy .pt) overriding the profile's default.")
    hub_backbone_id: str = Field("Qwen/Qwen3-ASR-1.7B", description="Hub id used by the download command.")
    hub_mega_asr_id: str = Field("zhifeixie/Mega-ASR", description="Hub id used by the download command.")
    # --- word times (README: word timestamps) --------------------------------------------------------
    aligner_dir: Path | None = Field(
        None, description="production: a Qwen3-ForcedAligner-0.6B directory (original thinker.* or -hf "
        "layout), loaded at start for `timestamp_granularities[]=word`; empty = no aligner (word requests are a "
        "400). `mega-asr-server download` fetches it into <dest>/Qwen3-ForcedAligner-0.6B.")
    hub_aligner_id: str = Field("Qwen/Qwen3-ForcedAligner-0.6B", description="Hub id used by the download "
                                "command.")
    word_speech_edges: bool = Field(
        True, description="demo (Whisper cross-attention times): move word starts out of pauses and word ends to "
        "the end of their speech run (silero-vad), measured by `python -m bench.word_times`.")
    cache_dir: Path = Field(default_factory=_default_cache_dir,
                            description="Where the demo profile keeps its converted Whisper models.")
    served_model_name: str = Field("mega-asr", description="Model id listed by /v1/models; any `model` "
                                   "form value is accepted and echoed (clients send whisper-1).")

    # --- devices -------------------------------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA when available.")
    dtype: Literal["auto", "float32", "bfloat16", "float16", "int8"] = Field(
        "auto", description="Recognizer dtype. auto = bfloat16 on CUDA (float16 on GPUs without bf16); on CPU "
        "bfloat16 only with native bf16 matrix instructions (AMX-BF16, AVX512_BF16, Arm BF16: ~3x faster), "
        "else int8. int8 (CPU): float32 model whose Linear layers, chosen per part by measurement, get int8 "
        "weights and per-row int8 activations (FBGEMM): same tokens alone and batched, WER within 0.5 points "
        "of float32; where torch lacks the kernels it runs float32 and says why. bfloat16 on a CPU without "
        "native bf16 (10-450x slower matrix products) and float16 on CPU are refused at startup. The router "
        "always runs float32. The choice and its reason are logged and shown by /v1/models and "
        "asr_model_info.")

    # --- routing -------------------------------------------------------------------------------------
    routing: Literal["router", "always_robust", "always_base"] = Field(
        "router", description="router = per-segment choice by P(degraded) >= threshold; always_robust merges "
        "the LoRA into the weights once at load (upstream's default without routing).")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Router threshold; lower sends more audio "
                             "to the robust path. Requests may override it with the `threshold` field.")

    # --- no invented text (README: "No invented text") -----------------------------------------------------
    speech_gate: bool = Field(True, description="Run silero-vad on every segment before any model: a segment "
                              "without speech gets empty text and `no_speech` without router or recognizer time.")
    speech_gate_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="silero P(speech) that starts a "
                                         "speech run (a run lasts while P >= this - 0.15).")
    speech_gate_min_speech_seconds: float = Field(0.25, ge=0.0, le=5.0, description="A segment with less "
                                                  "speech than this (all runs together) has no speech.")
    guards: bool = Field(True, description="Check every recognized text (both paths) against the thresholds "
                         "below: blank invented text, cut loops, flag low confidence.")
    guard_no_speech_threshold: float = Field(0.6, ge=0.0, le=1.0, description="Blank when the model's P(no "
                                             "speech) is above this AND avg_logprob is below the next one.")
    guard_logprob_threshold: float = Field(-1.0, le=0.0, description="avg_logprob below this: flag "
                                           "`low_logprob` (keep the text), or blank with the no-speech rule.")
    guard_compression_ratio_threshold: float = Field(2.4, gt=1.0, description="Blank text whose gzip "
                                                     "compression ratio is above this (too repetitive).")
    guard_repetition_min_repeats: int = Field(10, ge=3, description="A unit of up to 50 characters repeated "
                                              "this many times back to back is a decoding loop: cut to one.")
    guard_min_script_share: float = Field(0.5, ge=0.0, le=1.0, description="With a known language (the "
                                          "request's, or an English-only model), blank text with fewer of "
                                          "its words in that language's scripts.")

    # --- batching ------------------------------------------------------------------------------------
    engine: Literal["continuous", "static"] = Field(
        "continuous", description="continuous = segments join the running batch between decode steps and "
        "leave when they end (results and streamed text go out at once); static = a batch runs until its "
        "last segment ends before the next starts (the previous engine, kept for comparison).")
    max_batch_items: int = Field(16, ge=1, le=512, description="Segments decoding together at most (the "
                                 "running rows; static: segments per batch).")
    max_kv_cache_mb: float = Field(0, ge=0, description="Bound on the running rows' attention-cache memory "
                                   "(each row counted at its longest: a full segment and token budget); the "
                                   "row limit becomes the smaller of this and max_batch_items. 0 = no bound "
                                   "beyond max_batch_items.")
    max_batch_audio_seconds: float = Field(240.0, gt=0, description="Audio that may join in one iteration "
                                           "(prefill work between two decode steps; static: per batch).")
    shortest_first: bool = Field(True, description="Continuous engine: while rows decode, the work that "
                                 "ends soonest goes first (shortest remaining work, aged; app/engine/"
                                 "shortest_first.py); false = every waiting segment joins at the next iteration.")
    shortest_first_aging: float = Field(0.1, ge=0, description="Seconds of expected work a waiting request is "
                                        "forgiven per second it has waited: a request is passed over for at "
                                        "most (its next segment's work - the shortest) / this (~55 s for a "
                                        "30 s segment among 2 s clips, Whisper base on 2 CPU cores). Higher = "
                                        "closer to arrival order; 0 = pure shortest-first.")
    max_prefill_seconds: float = Field(2.0, gt=0, description="Shortest-first: expected prefill (measured per "
                                       "segment as the service runs) joining in one iteration, at least one "
                                       "segment.")
    prefill_ahead: int = Field(4, ge=0, le=16, description="Continuous engine on a CPU with 2+ threads: while rows "
                               "decode, up to this many joining segments have their audio encoder run ahead on a "
                               "second thread, one CPU thread each side, and join once it is done (app/engine/"
                               "prefill_ahead.py); shorter work arriving sends the ones not started back to the "
                               "queue. 0 = off: every prefill runs inline on all threads.")
    max_batch_wait_ms: float = Field(25.0, ge=0, le=5000, description="When nothing is decoding: how long "
                                     "the first arrival waits for others to join it (not where prefill runs "
                                     "ahead: a CPU encodes one window at a time, so company saves nothing).")
    max_queue_audio_seconds: float = Field(1800.0, gt=0, description="Admission control: a request whose "
                                           "audio would push the queue past this gets 429 + Retry-After.")
    max_queue_segments: int = Field(1024, ge=1, description="Hard bound on queued segments.")

    # --- requests ------------------------------------------------------------------------------------
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1024, description="413 beyond this (OpenAI: 25 MB).")
    max_audio_seconds: float = Field(1200.0, gt=0, description="413 for longer audio (the model's limit).")
    max_segment_seconds: float = Field(30.0, gt=1, le=30, description="Long audio is cut into segments of "
                                       "at most this length at pauses.")
    request_timeout_seconds: float = Field(300.0, gt=0, description="Deadline per request: 504 after it.")
    max_new_tokens: int = Field(256, ge=8, le=2048, description="Token cap per segment (Mega-ASR: 256).")
    decode_threads: int = Field(2, ge=1, le=64, description="Thread pool for audio decoding.")
    torch_threads: int = Field(0, ge=0, le=256, description="CPU threads of the model thread's kernels; 0 = "
                               "OMP_NUM_THREADS where set, else the CPUs this process may run on, capped by "
                               "its cgroup CPU quota. Audio threads use one each (app/engine/inference_thread.py).")
    drain_seconds: float = Field(30.0, ge=0, description="On SIGTERM: stop admitting, finish accepted "
                                 "work for at most this long, then exit. Keep below the pod's grace period.")

    # --- security ------------------------------------------------------------------------------------
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated bearer keys; empty = no authentication.")

    # --- server --------------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Bind address of `mega-asr-server serve`.")
    port: int = Field(8000, ge=1, le=65535, description="Port of `mega-asr-server serve`.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    warmup: bool = Field(True, description="Run one inference before /readyz turns 200.")

    # --- background jobs (README: Jobs; app/jobs) ----------------------------------------------------
    jobs: bool = Field(True, description="Serve /v1/audio/transcriptions/jobs and run the job runner and the "
                       "webhook deliverer in this replica.")
    database_url: SecretStr | None = Field(
        None, description="The job store. Empty = an embedded SQLite file, jobs.sqlite3 under MEGA_ASR_CACHE_DIR "
        "(one replica). Several replicas share one PostgreSQL: postgresql+asyncpg://user:password@host:5432/db "
        "(keep it in a secret: it holds the password). Migrations run at start-up, under an advisory lock.")
    job_max_upload_bytes: int = Field(1 << 30, ge=1024, description="413 for a job upload beyond this (checked "
                                      "while streaming; the upload goes to the store in 1 MiB chunks).")
    job_max_audio_seconds: float = Field(6 * 3600.0, gt=0, description="A job whose audio is longer fails with "
                                         "audio_too_long (413 at submit when the file's header says so).")
    job_max_backlog_hours: float = Field(1000.0, gt=0, description="Submits get a 429 (with Retry-After) while "
                                         "the store holds at least this much job audio not yet transcribed (all "
                                         "replicas, queued and running): bounds the queue a burst of submits "
                                         "can build.")
    job_retention_hours: float = Field(168.0, gt=0, description="Finished jobs (completed, failed, cancelled) "
                                       "and their transcripts are deleted this long after they finished.")
    job_keep_audio: bool = Field(False, description="Keep a job's audio in the store after it finished (until "
                                 "retention or DELETE); default: deleted when the job ends.")
    job_lease_seconds: float = Field(60.0, ge=1, description="A replica's claim on a job; a job whose lease "
                                     "ran out (its replica died) is taken over by another replica.")
    job_heartbeat_seconds: float = Field(10.0, gt=0, description="How often a replica renews its jobs' leases "
                                         "(and notices a cancel from another replica). Keep well below the lease.")
    job_poll_seconds: float = Field(2.0, gt=0, description="How often an idle replica looks for queued jobs "
                                    "and due webhook deliveries.")
    job_concurrency: int = Field(2, ge=1, le=64, description="Jobs one replica runs at once.")
    job_engine_window: int = Field(16, ge=1, le=1024, description="Job segments a replica keeps in the engine "
                                   "(queued or decoding) at once, all jobs together.")
    job_rows_beside_sync: int = Field(0, ge=0, le=512, description="Job rows that keep decoding while "
                                      "synchronous segments wait or run; the rest are sent back to their queue "
                                      "(their work is redone), so a short request never waits behind a job. "
                                      "0 = jobs run only when synchronous work is quiet (CPU); on a GPU, where a "
                                      "row beside costs little, a few keep jobs moving under steady traffic.")
    job_sync_quiet_ms: float = Field(500.0, ge=0, le=60_000, description="Synchronous work counts as present "
                                     "this long after it was last seen: jobs do not refill the rows in the "
                                     "gaps between requests (a prefill the next request would wait for).")
    job_join_per_iteration: int = Field(2, ge=1, le=512, description="Job segments prefilled per engine "
                                        "iteration at most (bounds the work a synchronous arrival waits for).")
    webhook_secret: SecretStr | None = Field(None, description="Standard Webhooks signing secret, whsec_<base64>. "
                                             "Without it, jobs with a webhook_url are refused (400).")
    webhook_retry_seconds: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0],
        description="Waits between delivery attempts (comma-separated seconds); after the last one the "
        "delivery is given up (default: 9 attempts over about 7.5 h).")
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="Per delivery attempt; a timeout is retried.")
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated host names and CIDRs webhooks may go to; empty = any. "
        "SSRF: a webhook makes this service send requests where a client says, so set it; every address the "
        "name resolves to is checked at delivery, redirects are not followed.")

    @field_validator("webhook_retry_seconds", "webhook_allowed_hosts", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("webhook_retry_seconds")
    @classmethod
    def _check_retries(cls, value: list[float]) -> list[float]:
        if any(wait <= 0 for wait in value):
            raise ValueError("webhook_retry_seconds must be positive waits in seconds")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        import base64
        import binascii

        if value is None or not value.get_secret_value():
            return None
        raw = value.get_secret_value()
        try:
            key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            key = b""
        if not raw.startswith("whsec_") or len(key) < 16:
            raise ValueError("webhook_secret must be whsec_ followed by the base64 of at least 16 random bytes")
        return value

    @property
    def job_database_url(self) -> str:
        """The job store's URL: the setting, or the embedded SQLite file under the cache directory."""
        if self.database_url is not None and self.database_url.get_secret_value():
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{self.cache_dir / 'jobs.sqlite3'}"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value
