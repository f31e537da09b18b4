"""Word times: how right they are, and what they cost.

    python -m bench.word_times [--out bench/results/word_times.json] [--baseline-tree DIR] [--skip-load]

1. Accuracy on the reference set (bench/word_reference.py: hand-labelled words + joined human phrases with
   known edges), per demo path (tiny.en = base route, base = robust route), for the raw cross-attention
   times and for each speech-edge correction (starts out of pauses, ends to the end of their run, both):
   mean and 95th percentile of |start error| and |end error|, their signed means (bias) and the mean
   absolute boundary error over starts and ends together. The tests profile's tiny random aligner is run
   as a smoke check only (its weights are random: its times mean nothing).
2. Cost through the real service (demo profile, uvicorn subprocess, c=16, bench.clips.benchmark_mix):
   throughput without words and with `timestamp_granularities[]=word`, and, with --baseline-tree (a checkout
   of the code before word times, e.g. `git archive main | tar -x -C DIR`), the same no-words load on it:
   "asking for no words costs nothing". Runs alternate (baseline, no words, words) `--rounds` times; the
   medians are compared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np

from app.audio.speech_gate import SpeechGateConfig, segment_speech_runs
from app.engine.pipeline import Pipeline, SegmentJob
from app.engine.words import refine_with_speech
from app.metrics import Metrics
from app.settings import Settings
from bench.clips import benchmark_mix
from bench.loadgen import run_load
from bench.machine import cpu_meter, machine_description
from bench.word_reference import ReferenceFile, reference_set
from models.recognition import AlignmentItem, Word

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {"raw": (False, False), "starts": (True, False), "ends": (False, True), "both": (True, True)}


def _norm(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def errors(ref: ReferenceFile, words: Sequence[Word]) -> tuple[list[float], list[float], int]:
    """Signed start and end errors (seconds) and the number of reference spans no word was given for."""
    if ref.kind == "labelled":
        matcher = difflib.SequenceMatcher(a=[_norm(s.text) for s in ref.spans], b=[_norm(w.word) for w in words])
        pairs = [(ref.spans[a + k], words[b + k]) for a, b, size in matcher.get_matching_blocks()
                 for k in range(size)]
        return ([w.start - s.start for s, w in pairs], [w.end - s.end for s, w in pairs],
                len(ref.spans) - len(pairs))
    groups: list[list[Word]] = [[] for _ in ref.spans]
    for word in words:  # each word belongs to the phrase nearest its middle
        middle = (word.start + word.end) / 2
        nearest = min(range(len(ref.spans)), key=lambda i: max(ref.spans[i].start - middle,
                                                                middle - ref.spans[i].end, 0.0))
        groups[nearest].append(word)
    starts = [g[0].start - s.start for s, g in zip(ref.spans, groups) if g]
    ends = [g[-1].end - s.end for s, g in zip(ref.spans, groups) if g]
    return starts, ends, sum(1 for g in groups if not g)


def summary(starts: list[float], ends: list[float], missing: int) -> dict:
    both = [abs(x) for x in starts + ends]
    pick = (lambda xs: float(np.percentile(np.abs(xs), 95)) if xs else float("nan"))
    return {"boundaries": len(both), "missing_spans": missing,
            "mean_abs_ms": 1000 * statistics.fmean(both), "p95_abs_ms": 1000 * pick(both),
            "start_mean_abs_ms": 1000 * statistics.fmean(map(abs, starts)), "start_p95_ms": 1000 * pick(starts),
            "start_bias_ms": 1000 * statistics.fmean(starts),
            "end_mean_abs_ms": 1000 * statistics.fmean(map(abs, ends)), "end_p95_ms": 1000 * pick(ends),
            "end_bias_ms": 1000 * statistics.fmean(ends)}


def raw_words(pipeline: Pipeline, ref: ReferenceFile, route: str) -> tuple[tuple[Word, ...], tuple, str]:
    """Recognize on `route` and align on the same model, without corrections; plus the speech runs."""
    runs = segment_speech_runs([ref.samples], SpeechGateConfig())[0]
    routed = pipeline.route([SegmentJob(audio=ref.samples, route=route, language="en", words=True)])[0]
    rec = pipeline.recognizer.recognize([routed.item])[0]
    result = pipeline.finish(routed, rec)
    item = AlignmentItem(audio=ref.samples, text=result.text, language="en", robust=routed.item.robust,
                         tokens=rec.tokens if result.text == rec.text.strip() else (), state=rec.alignment_state)
    return pipeline.words.aligner.align([item])[0], runs, result.text


def accuracy(pipeline: Pipeline, refs: list[ReferenceFile]) -> dict:
    out: dict = {}
    for route, model in (("base", "tiny.en"), ("robust", "base")):
        collected = {name: ([], [], 0) for name in VARIANTS}
        for ref in refs:
            words, runs, _ = raw_words(pipeline, ref, route)
            for name, (starts, ends) in VARIANTS.items():
                s, e, m = errors(ref, refine_with_speech(words, runs, starts=starts, ends=ends))
                acc = collected[name]
                collected[name] = (acc[0] + s, acc[1] + e, acc[2] + m)
        out[model] = {name: summary(*values) for name, values in collected.items()}
    return out


def tests_profile_smoke() -> dict:
    from app.profiles import load_pipeline

    pipeline = load_pipeline(Settings(profile="tests"), Metrics())
    audio = reference_set()[0].samples
    started = time.perf_counter()
    words = pipeline.words.aligner.align([AlignmentItem(audio=audio, text="Bobby ripped the ledger.", language="en")])
    return {"words": len(words[0]), "seconds": time.perf_counter() - started,
            "note": "random weights: the times are meaningless, only that it runs"}


@contextlib.contextmanager
def service(tree: Path, port: int) -> Iterator[str]:
    """The demo profile served by `tree`'s code in a subprocess (uvicorn), ready."""
    env = {**os.environ, "MEGA_ASR_PROFILE": "demo", "MEGA_ASR_PORT": str(port), "MEGA_ASR_LOG_LEVEL": "warning",
           "PYTHONPATH": str(tree)}
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], cwd=tree, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while not _ready(base):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"service from {tree} did not become ready")
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=120)


def _ready(base: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    return False


def load_round(base: str, fields: dict[str, str], concurrency: int, total: int) -> dict:
    clips = benchmark_mix()
    asyncio.run(run_load(f"{base}/v1/audio/transcriptions", clips[:2], 2, 2, fields))  # warm the path
    with cpu_meter() as cpu:
        result = asyncio.run(run_load(f"{base}/v1/audio/transcriptions", clips, concurrency, total, fields))
    return {**result.summary(), "others_cpu_share": cpu.others_share}


def cost(baseline: Path | None, rounds: int, concurrency: int, total: int) -> dict:
    runs: dict[str, list[dict]] = {"baseline_no_words": [], "no_words": [], "words": []}
    plain = {"response_format": "verbose_json"}
    worded = {**plain, "timestamp_granularities[]": "word"}
    for _ in range(rounds):
        if baseline is not None:
            with service(baseline, 8791) as base:
                runs["baseline_no_words"].append(load_round(base, plain, concurrency, total))
        with service(ROOT, 8792) as base:
            runs["no_words"].append(load_round(base, plain, concurrency, total))
            runs["words"].append(load_round(base, worded, concurrency, total))
    medians = {name: statistics.median(r["audio_seconds_per_second"] for r in rs) for name, rs in runs.items() if rs}
    ratios = {"words / no words": medians["words"] / medians["no_words"]}
    if "baseline_no_words" in medians:
        ratios["no words / before word times"] = medians["no_words"] / medians["baseline_no_words"]
    return {"concurrency": concurrency, "requests": total, "runs": runs,
            "median_audio_seconds_per_second": medians, "ratios": ratios}


def print_report(out: dict) -> None:
    print(f"machine: {out['machine']}; recognizer dtype {out['dtype']}")
    print("| path | times | boundaries | mean abs ms | p95 ms | start mean / p95 / bias ms | "
          "end mean / p95 / bias ms | missed spans |")
    print("|---|---|---|---|---|---|---|---|")
    for model, variants in out["accuracy"].items():
        for name, s in variants.items():
            print(f"| {model} | {name} | {s['boundaries']} | {s['mean_abs_ms']:.0f} | {s['p95_abs_ms']:.0f} | "
                  f"{s['start_mean_abs_ms']:.0f} / {s['start_p95_ms']:.0f} / {s['start_bias_ms']:+.0f} | "
                  f"{s['end_mean_abs_ms']:.0f} / {s['end_p95_ms']:.0f} / {s['end_bias_ms']:+.0f} | "
                  f"{s['missing_spans']} |")
    print(f"tests profile aligner (smoke): {out['tests_profile']}")
    if "cost" in out:
        c = out["cost"]
        print(f"c={c['concurrency']}, {c['requests']} requests per run; median audio s/s: "
              + ", ".join(f"{k} {v:.2f}" for k, v in c["median_audio_seconds_per_second"].items()))
        for name, runs in c["runs"].items():
            print(f"  {name}: " + ", ".join(f"{r['audio_seconds_per_second']:.2f} (others' CPU "
                                            f"{r['others_cpu_share']:.0%})" for r in runs))
        print("ratios: " + ", ".join(f"{k} = {v:.3f}" for k, v in c["ratios"].items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "word_times.json")
    parser.add_argument("--baseline-tree", type=Path, help="code before word times, for the no-words cost")
    parser.add_argument("--skip-load", action="store_true", help="accuracy only")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=3, help="joined reference files per seed (pause draws)")
    args = parser.parse_args(argv)
    from app.profiles import load_pipeline

    pipeline = load_pipeline(Settings(profile="demo"), Metrics())
    refs = [ref for seed in range(args.seeds) for ref in reference_set(seed) if seed == 0 or ref.kind == "joined"]
    out = {"machine": machine_description(), "dtype": pipeline.dtype, "reference_files": len(refs),
           "accuracy": accuracy(pipeline, refs), "tests_profile": tests_profile_smoke()}
    del pipeline
    if not args.skip_load:
        out["cost"] = cost(args.baseline_tree, args.rounds, args.concurrency, args.requests)
    print_report(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
