"""`python -m bench.run`: each profile's service under load at several concurrencies, against sequential,
ideal in-process and (demo) peer-server baselines, all in one run. Prints a markdown table with the device,
dtype and parameter count of each profile; writes JSON and plots. Profiles and their sizes: bench/setups.py."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import resource
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn

from app.engine.pipeline import Pipeline
from app.main import create_app
from app.settings import Settings
from bench import baselines, report
from bench.checks import profile_checks
from bench.clips import recording_of, short_clip
from bench.isa import isa_label, restart_limited
from bench.loadgen import run_load
from bench.machine import cpu_meter, machine_description
from bench.model_thread import off_main_thread
from bench.peer import COMPUTE_TYPES, peer_model_name, peer_server
from bench.quality import wer
from bench.setups import SETUPS, BenchSetup
from bench.under_load import bare_prefill_and_step, short_clip_under_load, time_to_first_delta

CACHE = Path(os.environ.get("MEGA_ASR_BENCH_CACHE", Path.home() / ".cache" / "mega-asr" / "bench"))
URL_PATH = "/v1/audio/transcriptions"
FIELDS = {"language": "en", "response_format": "json"}
PEER_ROUTE = {"tiny.en": "base", "base": "robust"}  # the demo route that runs the peer's model


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
    deadline = time.monotonic() + 1800
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
        thread.join(timeout=600)


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


def load_levels(url: str, setup: BenchSetup, fields: dict[str, str], label: str) -> tuple[list[dict], dict]:
    """The clip list at every concurrency level of the setup: (one summary per level, the texts answered
    at the first level)."""
    rows, texts = [], {}
    for level in setup.levels:
        result = asyncio.run(run_load(url, setup.clips, level, setup.requests(level), fields))
        rows.append(result.summary())
        texts = texts or result.texts
        print(f"[{setup.name}] {label} c={level}: {rows[-1]}", flush=True)
    return rows, texts


def base_route_rows(url: str, setup: BenchSetup, levels: tuple[int, ...]) -> list[dict]:
    """Every request routed to base (qwen-full: what qwen-asr, which runs no LoRA, computes)."""
    fields = {**FIELDS, "route": "base"}
    return [asyncio.run(run_load(url, setup.clips, c, setup.requests(c), fields)).summary() for c in levels]


def measure_float32(setup: BenchSetup, out: dict) -> None:
    """qwen-full: the same service with the model in float32, routed and on the base route, at c=16. Built
    after the main pipeline is released (both at once would not fit in memory)."""
    assert setup.float32_pipeline is not None
    setup.pipeline = None
    gc.collect()
    pipeline = off_main_thread(setup.float32_pipeline)
    with serving(setup.settings, pipeline) as base:
        out["service_float32"] = [asyncio.run(run_load(base + URL_PATH, setup.clips, 16, setup.requests(16),
                                                       FIELDS)).summary()]
        out["service_float32_base_route"] = base_route_rows(base + URL_PATH, setup, (16,))
    print(f"[{setup.name}] float32: {out['service_float32']} base route {out['service_float32_base_route']}",
          flush=True)
    del pipeline
    gc.collect()


def measure_service(setup: BenchSetup, settings: Settings, out: dict, key: str) -> None:
    """Serve the pipeline with `settings` and fill out[key] (load rows) and its metrics-derived figures."""
    suffix = key.removeprefix("service")
    with serving(settings, setup.pipeline) as base:
        out[key], out[f"{key}_texts"] = load_levels(base + URL_PATH, setup, FIELDS, key)
        if key == "service" and setup.base_route_levels:
            out["service_base_route"] = base_route_rows(base + URL_PATH, setup, setup.base_route_levels)
            print(f"[{setup.name}] service base route: {out['service_base_route']}", flush=True)
        if key == "service":
            if setup.bare_call_repeats:
                single = asyncio.run(run_load(base + URL_PATH, setup.clips[:1], 1, 5, FIELDS))
                out["service_c1_same_clip_p50"] = single.summary()["latency_p50"]
            if setup.peer_model:
                same = {**FIELDS, "route": PEER_ROUTE[setup.peer_model]}
                out["service_same_model"] = [asyncio.run(run_load(
                    base + URL_PATH, setup.clips, c, setup.requests(c), same)).summary() for c in (1, 16)]
        if setup.under_load:
            scenario = short_clip_under_load(base, short_clip(), recording_of(44.0, "long44"), FIELDS,
                                             samples=setup.scenario_samples)
            out[f"under_load{suffix}"] = asyncio.run(scenario)
            print(f"[{setup.name}] {key} short clip under load: {out[f'under_load{suffix}']}", flush=True)
        if setup.first_delta and key == "service":
            out["first_delta"] = asyncio.run(time_to_first_delta(base, recording_of(30.0, "segment30"), FIELDS,
                                                                 repeats=min(3, setup.scenario_samples)))
        metrics = scrape(base)
    out[f"batch_size_histogram{suffix}"] = batch_histogram(metrics)
    out[f"router_share_of_inference{suffix}"] = (metrics.get("asr_router_duration_seconds_sum", 0.0)
                                                / max(metrics.get("asr_inference_duration_seconds_sum", 0.0), 1e-9))


def measure_peer(setup: BenchSetup, out: dict) -> None:
    """The peer at each compute type, c=1 and c=16, each model warmed up by one request first."""
    assert setup.peer_model is not None
    out["peer_model"] = setup.peer_model
    out["peer"], texts = {}, {}
    with peer_server(CACHE, _free_port()) as peer_base:
        for compute_type in COMPUTE_TYPES:
            fields = {"model_name": peer_model_name(setup.peer_model, compute_type), "language": "en",
                      "temperature": "0"}
            asyncio.run(run_load(peer_base + URL_PATH, setup.clips[:1], 1, 1, fields))  # loads the model
            out["peer"][compute_type] = []
            for c in (1, 16):
                result = asyncio.run(run_load(peer_base + URL_PATH, setup.clips, c, setup.requests(c), fields))
                out["peer"][compute_type].append(result.summary())
                texts[compute_type] = result.texts
                print(f"[{setup.name}] peer {compute_type} c={c}: {out['peer'][compute_type][-1]}", flush=True)
    out["wer"] = {"peer_" + k: wer(setup.clips, v) for k, v in texts.items()}


def run_profile(setup: BenchSetup) -> dict:
    out: dict = {"facts": setup.facts, "baselines": [],
                 "clips": [{"name": c.name, "kind": c.kind, "seconds": round(c.seconds, 2)} for c in setup.clips]}
    if setup.bare_call_repeats:
        out["bare_call_seconds"] = off_main_thread(baselines.bare_call_seconds, setup.pipeline, setup.clips[0],
                                                   repeats=setup.bare_call_repeats)
    measure_service(setup, setup.settings, out, "service")
    for variant, settings in setup.variants.items():
        measure_service(setup, settings, out, f"service_{variant}")
    if setup.first_delta:  # the model's own cost for that segment alone, in-process
        out["first_delta"]["bare"] = off_main_thread(bare_prefill_and_step, setup.pipeline.recognizer,
                                                     recording_of(30.0, "segment30"),
                                                     repeats=min(3, setup.scenario_samples))
    toggle = None
    # Qwen3-ASR: upstream serves one file at a time with an in-place LoRA toggle (float weights only: a packed
    # model's sequential baseline runs its robust files through the row gate instead)
    if setup.adapter_dir is not None and setup.facts.get("packing", "none") == "none":
        from bench.qwen_profile import in_place_toggle, route_mix_comparison

        toggle = off_main_thread(in_place_toggle, setup.pipeline.recognizer.model, setup.adapter_dir)
        if setup.route_mix:
            out["route_mix_seconds"] = off_main_thread(route_mix_comparison, setup.pipeline.recognizer, toggle,
                                                       route_mix_audio(setup.clips))
    for baseline in (off_main_thread(baselines.sequential, setup.pipeline, setup.clips, toggle=toggle),
                     off_main_thread(baselines.ideal, setup.pipeline, setup.clips, setup.settings.max_batch_items)):
        out["baselines"].append(baseline.summary())
        print(f"[{setup.name}] {baseline.name}: {out['baselines'][-1]}", flush=True)
    if setup.peer_model:
        measure_peer(setup, out)
        out["wer"]["service"] = wer(setup.clips, out["service_texts"])
    if setup.float32_pipeline is not None:
        measure_float32(setup, out)
    if setup.qwen_asr:
        from bench.qwen_asr_peer import measure_qwen_asr

        setup.pipeline = None
        gc.collect()
        out["qwen_asr"] = measure_qwen_asr(CACHE, setup.clips, dims=setup.facts.get("dimensions", "real"))
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--profiles", default="demo,qwen,qwen-full", help=f"of {', '.join(SETUPS)}")
    parser.add_argument("--concurrency", default="1,4,16,64", help="demo and qwen levels")
    parser.add_argument("--requests", type=int, default=16, help="demo/qwen requests per level (at least 2 x level)")
    parser.add_argument("--full-concurrency", default="1,16", help="qwen-full levels")
    parser.add_argument("--full-requests", default="4,16", help="qwen-full requests, one per level")
    parser.add_argument("--full-clips", type=int, default=16, help="qwen-full: clips in the 1-30 s mix")
    parser.add_argument("--full-dims", default="real", choices=("real", "small"), help="qwen-full: small = dry run")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--peer-model", default="base", choices=sorted(PEER_ROUTE),
                        help="demo: the Whisper model compared with the peer (base = the robust path)")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--isa", default="native", choices=("native", "avx2"),
                        help="avx2: run as on an AVX2-only CPU (every library capped: bench/isa.py); the peer too")
    parser.add_argument("--no-static", action="store_true", help="skip the static-engine rows (saves time)")
    parser.add_argument("--dtype", default="auto", help="demo: the recognizers' dtype; int8-tensor = FBGEMM's "
                        "per-tensor int8, NOT batch-invariant (measures what giving up the guarantee buys)")
    parser.add_argument("--full-fp32", action="store_true",
                        help="qwen-full: also the same service in float32 at c=16 (routed and base)")
    parser.add_argument("--qwen-asr", action="store_true",
                        help="qwen-full: also the official qwen-asr package on the same weights (bench/qwen_asr_peer.py)")
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    restart_limited(args.isa)  # the ISA caps must be in the environment before torch starts
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": machine_description(), "isa": isa_label(), "profiles": {}}
    for name in args.profiles.split(","):
        setup = off_main_thread(SETUPS[name], args)  # no OpenMP team left on this thread
        setup.facts["isa"] = isa_label()
        print(f"[{name}] {report.facts_line(setup.facts)}", flush=True)
        with cpu_meter() as meter:
            out = run_profile(setup)
        out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["wall_seconds"], out["other_processes_cpu_share"] = meter.wall_seconds, meter.others_share
        out["checks"] = profile_checks(name, out)
        results["profiles"][name] = out
        del setup
        gc.collect()
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report.write_json(results, args.out)
    report.plots(results, args.out)
    table = report.markdown(results)
    (args.out / "results.md").write_text(table)
    print(table)
    return 0


def route_mix_audio(clips: list, items: int = 16) -> list:
    """`items` segments with the same length distribution on both routes (pairs of equal clips)."""
    from app.audio.segmenter import split_for_recognition

    segments = [s.samples for clip in clips for s in split_for_recognition(clip.samples)]
    return [segments[(i // 2) % len(segments)] for i in range(items)]


if __name__ == "__main__":
    raise SystemExit(main())
