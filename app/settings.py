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
    max_batch_wait_ms: float = Field(25.0, ge=0, le=5000, description="When nothing is decoding: how long "
                                     "the first arrival waits for others to join it.")
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

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value
