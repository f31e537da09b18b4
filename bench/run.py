"""`python -m bench.run`: the service under load at several concurrencies, against sequential, ideal
in-process and peer-server baselines, all in one run. Prints a markdown table; writes JSON and plots."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import resource
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn

from app.main import create_app
from app.metrics import Metrics
from app.pipeline import Pipeline
from app.profiles import load_pipeline
from app.settings import Settings
from bench import baselines, report
from bench.clips import Clip, benchmark_mix
from bench.loadgen import run_load
from bench.peer import peer_server
from bench.quality import wer

CACHE = Path(os.environ.get("MEGA_ASR_BENCH_CACHE", Path.home() / ".cache" / "mega-asr" / "bench"))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(settings: Settings, pipeline: Pipeline) -> Iterator[str]:
    port = _free_port()
    app = create_app(settings, pipeline=pipeline)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz").status_code == 200:
                break
        if time.monotonic() > deadline:
            raise RuntimeError("service did not become ready")
        time.sleep(0.1)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=120)


def scrape(base: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{base}/metrics").text):
        for sample in family.samples:
            key = sample.name + ("" if not sample.labels else str(sorted(sample.labels.items())))
            values[key] = sample.value
    return values


def batch_histogram(metrics: dict[str, float]) -> dict[str, float]:
    return {k.split("'le', ")[1].rstrip("')]"): v for k, v in metrics.items() if k.startswith("asr_batch_size_bucket")}


def profile_settings(profile: str, max_batch: int) -> Settings:
    return Settings(profile=profile, max_batch_items=max_batch, max_batch_wait_ms=30.0,
                    max_queue_audio_seconds=100_000, max_queue_segments=100_000, request_timeout_seconds=3600)


def run_profile(name: str, pipeline: Pipeline, settings: Settings, clips: list[Clip], levels: list[int],
                requests_per_level: int, peer: bool, adapter_dir: Path | None = None) -> dict:
    url_path = "/v1/audio/transcriptions"
    fields = {"language": "en", "response_format": "json"}
    out: dict = {"service": [], "baselines": []}
    bare = baselines.bare_call_seconds(pipeline, clips[0])
    with serving(settings, pipeline) as base:
        for level in levels:
            total = max(requests_per_level, 2 * level)
            result = asyncio.run(run_load(base + url_path, clips, level, total, fields))
            out["service"].append(result.summary())
            print(f"[{name}] service c={level}: {result.summary()}", flush=True)
            if level == 1:
                single = asyncio.run(run_load(base + url_path, clips[:1], 1, 5, fields))
                out["service_c1_same_clip_p50"] = single.summary()["latency_p50"]
                out["service_texts"] = result.texts
        metrics = scrape(base)
        if peer:
            same = {**fields, "route": "base"}
            out["service_same_model"] = [asyncio.run(run_load(base + url_path, clips, c, max(requests_per_level, 2 * c),
                                                              same)).summary() for c in (1, 16)]
    out["batch_size_histogram"] = batch_histogram(metrics)
    out["router_share_of_inference"] = (metrics.get("asr_router_duration_seconds_sum", 0.0)
                                       / max(metrics.get("asr_inference_duration_seconds_sum", 0.0), 1e-9))
    toggle = None
    if adapter_dir is not None:  # Qwen3-ASR: upstream serves one file at a time with an in-place LoRA toggle
        from bench.qwen_profile import in_place_toggle, route_mix_comparison

        toggle = in_place_toggle(pipeline.recognizer.model, adapter_dir)
        out["route_mix_seconds"] = route_mix_comparison(pipeline.recognizer, toggle, route_mix_audio(clips))
    out["baselines"].append(baselines.sequential(pipeline, clips, toggle=toggle).summary())
    out["baselines"].append(baselines.ideal(pipeline, clips, settings.max_batch_items).summary())
    out["bare_call_seconds"] = bare
    if peer:
        out["peer"] = []
        with peer_server(CACHE, _free_port()) as peer_base:
            for c in (1, 16):
                result = asyncio.run(run_load(peer_base + url_path, clips, c, max(requests_per_level, 2 * c),
                                              {"model_name": "tiny.en", "language": "en", "temperature": "0"}))
                out["peer"].append(result.summary())
                out["peer_texts"] = result.texts
        out["wer"] = {"service": wer(clips, out["service_texts"]), "peer": wer(clips, out["peer_texts"])}
    out["checks"] = checks(out)
    return out


def checks(out: dict) -> dict:
    by_c = {r["concurrency"]: r for r in out["service"]}
    seq, ideal = out["baselines"][0], out["baselines"][1]
    c16 = by_c.get(16, out["service"][-1])
    result = {
        "c16 throughput / sequential": {"value": c16["audio_seconds_per_second"] / seq["audio_seconds_per_second"],
                                        "target": ">= 3"},
        "c16 throughput / ideal": {"value": c16["audio_seconds_per_second"] / ideal["audio_seconds_per_second"],
                                   "target": ">= 0.8"},
        "c1 latency / bare call (same clip)": {"value": out["service_c1_same_clip_p50"] / out["bare_call_seconds"],
                                               "target": "<= 1.2"},
        "router share of inference": {"value": out["router_share_of_inference"], "target": "< 0.02"},
    }
    if "route_mix_seconds" in out:
        mix = out["route_mix_seconds"]
        result["50/50 mix: mixed batch / route-grouped time"] = {
            "value": mix["mixed_batch"] / mix["route_grouped"], "target": "<= 1"}
        result["50/50 mix: mixed batch / in-place toggle time"] = {
            "value": mix["mixed_batch"] / mix["in_place_toggle"], "target": "<= 1"}
    if "peer" in out:
        ours = {r["concurrency"]: r for r in out["service_same_model"]}
        theirs = {r["concurrency"]: r for r in out["peer"]}
        result["c16 throughput / peer (same model)"] = {
            "value": ours[16]["audio_seconds_per_second"] / theirs[16]["audio_seconds_per_second"], "target": ">= 3"}
        result["c16 p50 latency / peer"] = {"value": ours[16]["latency_p50"] / theirs[16]["latency_p50"],
                                            "target": "<= 0.5"}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--profiles", default="demo,qwen")
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--requests", type=int, default=16, help="requests per level (at least 2 x concurrency)")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    levels = [int(c) for c in args.concurrency.split(",")]
    clips = benchmark_mix()
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
               "clips": [{"name": c.name, "kind": c.kind, "seconds": round(c.seconds, 2)} for c in clips],
               "profiles": {}}
    for name in args.profiles.split(","):
        settings = profile_settings("demo" if name == "demo" else "tests", args.max_batch)
        pipeline, adapter_dir = bench_pipeline(name, settings)
        results["profiles"][name] = run_profile(name, pipeline, settings, clips, levels, args.requests,
                                                peer=(name == "demo" and not args.no_peer), adapter_dir=adapter_dir)
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report.write_json(results, args.out)
    report.plots(results, args.out)
    table = report.markdown(results)
    (args.out / "results.md").write_text(table)
    print(table)
    return 0


def bench_pipeline(name: str, settings: Settings) -> tuple[Pipeline, Path | None]:
    """(pipeline, the adapter directory of the Qwen3-ASR profile or None)."""
    if name == "demo":
        return load_pipeline(settings, Metrics()), None
    from bench.qwen_profile import qwen_bench_pipeline

    return qwen_bench_pipeline()


def route_mix_audio(clips: list[Clip], items: int = 16) -> list:
    """`items` segments with the same length distribution on both routes (pairs of equal clips)."""
    from app.segmenter import split_for_recognition

    segments = [s.samples for clip in clips for s in split_for_recognition(clip.samples)]
    return [segments[(i // 2) % len(segments)] for i in range(items)]


if __name__ == "__main__":
    raise SystemExit(main())
