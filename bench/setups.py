"""What each benchmark profile runs: the pipeline, its clips, the load levels and which comparisons.

- demo: Whisper tiny.en / base (real weights) and the demo router, against the peer server (int8 and
  float32) on the same weights;
- qwen: the ~45 M Qwen3-ASR stand-in (kept as the quick profile and the CI smoke test);
- qwen-full: Qwen3-ASR-1.7B dimensions (bench/full_size.py) on a 1–30 s length mix.

Adding a profile is one builder in SETUPS; adding a service variant (an engine, a batching policy) is one
more Settings in `BenchSetup.variants`, measured under the same load and reported as service rows of
their own.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.engine.pipeline import Pipeline
from app.metrics import Metrics
from app.settings import Settings
from bench.clips import Clip, benchmark_mix, length_mix


@dataclass
class BenchSetup:
    name: str
    pipeline: Pipeline
    settings: Settings  # the service as deployed (the "service" rows)
    clips: list[Clip]
    levels: list[int]
    requests: Callable[[int], int]  # requests sent at a concurrency level
    facts: dict  # parameters, device, dtype: printed and recorded
    peer_model: str | None = None  # demo: the Whisper model the peer serves ("tiny.en" | "base")
    adapter_dir: Path | None = None  # Qwen3-ASR: the adapter the in-place toggle baseline merges
    route_mix: bool = False  # time the 50/50 route mix three ways (mixed, grouped, toggle)
    bare_call_repeats: int = 3  # 0: skip the bare-call latency floor
    variants: dict[str, Settings] = field(default_factory=dict)  # more service rows: name -> settings
    under_load: bool = False  # a short clip's latency while 4 clients send 44 s recordings (each engine)
    first_delta: bool = False  # stream=true on one 30 s segment: first delta vs the bare prefill + a step
    scenario_samples: int = 8  # requests timed per scenario measurement (under load: idle and loaded each)
    base_route_levels: tuple[int, ...] = ()  # also the service with every request routed to base, at these levels
    # qwen-full: the same service with the model in float32, built after the main pipeline is freed
    float32_pipeline: Callable[[], Pipeline] | None = None
    qwen_asr: bool = False  # qwen-full: the official qwen-asr package on the same weights (separate process)


def service_settings(profile: str, max_batch: int, engine: str = "continuous") -> Settings:
    return Settings(profile=profile, max_batch_items=max_batch, max_batch_wait_ms=30.0, engine=engine,
                    max_queue_audio_seconds=100_000, max_queue_segments=100_000, request_timeout_seconds=3600)


def static_engine(profile: str, max_batch: int) -> dict[str, Settings]:
    """The previous engine (a batch runs to its end), measured under the same load for comparison."""
    return {"static": service_settings(profile, max_batch, engine="static")}


def at_least_twice(requests: int) -> Callable[[int], int]:
    return lambda level: max(requests, 2 * level)


def demo_setup(args: argparse.Namespace) -> BenchSetup:
    from app.profiles import load_pipeline

    settings = service_settings("demo", args.max_batch)
    if args.dtype != "auto":  # model_copy skips validation: the benchmark-only int8-tensor is no service setting
        settings = settings.model_copy(update={"dtype": args.dtype})
    pipeline = load_pipeline(settings, Metrics())
    recognizer = pipeline.recognizer
    parameters = sum(count_parameters(r.model) for r in (recognizer.base, recognizer.robust))
    return BenchSetup("demo", pipeline, settings, benchmark_mix(), _levels(args.concurrency),
                      at_least_twice(args.requests), _facts(pipeline, parameters),
                      peer_model=None if args.no_peer else args.peer_model,
                      variants={} if args.no_static else static_engine("demo", args.max_batch),
                      under_load=True, first_delta=True)


def qwen_setup(args: argparse.Namespace) -> BenchSetup:
    from bench.qwen_profile import qwen_bench_pipeline

    pipeline, adapter_dir = qwen_bench_pipeline()
    parameters = count_parameters(pipeline.recognizer.model)
    return BenchSetup("qwen", pipeline, service_settings("tests", args.max_batch), benchmark_mix(),
                      _levels(args.concurrency), at_least_twice(args.requests), _facts(pipeline, parameters),
                      adapter_dir=adapter_dir, route_mix=True)


def full_size_setup(args: argparse.Namespace) -> BenchSetup:
    from bench.full_size import full_size_pipeline

    built = full_size_pipeline(dims=args.full_dims)
    levels = _levels(args.full_concurrency)
    counts = dict(zip(levels, [int(n) for n in args.full_requests.split(",")], strict=True))
    float32 = None
    if args.full_fp32 and built.facts["dtype"] != "float32":
        float32 = lambda: full_size_pipeline(dims=args.full_dims, dtype="float32").pipeline
    return BenchSetup("qwen-full", built.pipeline, service_settings("tests", args.max_batch),
                      length_mix(args.full_clips), levels, counts.__getitem__, built.facts,
                      adapter_dir=built.adapter_dir, bare_call_repeats=0,
                      variants={} if args.no_static else static_engine("tests", args.max_batch), first_delta=True,
                      base_route_levels=(16,) if 16 in levels else (), float32_pipeline=float32,
                      qwen_asr=args.qwen_asr)


def count_parameters(model: object) -> int:
    """Parameters, packed int8/fp16 Linear weights (models.quantized, not nn.Parameters) included; a packed
    output projection tied to the token embedding counts once (as in the float model)."""
    from models.fused_projections import SharedProduct
    from models.quantized import PackedLinear

    shared = [m for m in model.modules() if isinstance(m, SharedProduct)]
    inside = {id(m.packed) for m in shared}  # counted as the projections they replaced (no zero-filled bias)
    packed = sum(m.in_features * m.out_features + (m.bias.numel() if m.bias is not None else 0)
                 for m in model.modules() if isinstance(m, PackedLinear) and id(m) not in inside)
    packed += sum(m.parameters_replaced for m in shared)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(head, PackedLinear) and getattr(model.config, "tie_word_embeddings", False):
        packed -= head.in_features * head.out_features
    return sum(p.numel() for p in model.parameters()) + packed


def _levels(text: str) -> list[int]:
    return [int(level) for level in text.split(",")]


def _facts(pipeline: Pipeline, parameters: int) -> dict:
    return {"parameters": parameters, "device": pipeline.device, "dtype": pipeline.dtype,
            "dtype_reason": pipeline.dtype_reason}


SETUPS: dict[str, Callable[[argparse.Namespace], BenchSetup]] = {
    "demo": demo_setup, "qwen": qwen_setup, "qwen-full": full_size_setup}
