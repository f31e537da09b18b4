"""The benchmark harness end to end on the small Qwen3-ASR profile (the CI smoke test of `make bench`),
and its checks and report on fixed figures."""

from __future__ import annotations

import itertools

import pytest

from bench import report
from bench.checks import check, engine_checks, profile_checks
from bench.clips import benchmark_mix, length_mix
from bench.qwen_profile import qwen_bench_pipeline
from bench.run import run_profile
from bench.setups import BenchSetup, service_settings, static_engine


@pytest.mark.slow
def test_small_profile_runs_through_the_whole_harness():
    pipeline, adapter_dir = qwen_bench_pipeline()
    facts = {"parameters": 1, "device": pipeline.device, "dtype": pipeline.dtype}
    setup = BenchSetup("qwen", pipeline, service_settings("tests", 4), benchmark_mix(shorts=3, mediums=1, longs=0),
                       [1, 2], lambda level: 2 * level, facts, adapter_dir=adapter_dir, bare_call_repeats=1,
                       variants=static_engine("tests", 4), under_load=True, first_delta=True, scenario_samples=2)
    out = run_profile(setup)
    assert [row["concurrency"] for row in out["service"]] == [1, 2]
    assert [row["ok"] for row in out["service"]] == [2, 4] == [row["ok"] for row in out["service_static"]]
    assert out["under_load"]["loaded_p50"] > 0 and out["under_load_static"]["idle_p50"] > 0
    assert 0 < out["first_delta"]["first_delta_p50"] <= out["first_delta"]["done_p50"]
    assert out["first_delta"]["bare"]["prefill"] > 0 and out["first_delta"]["bare"]["step"] > 0
    assert [b["name"] for b in out["baselines"]] == ["sequential", "ideal"]
    assert out["bare_call_seconds"] > 0 and 0 < out["router_share_of_inference"] < 1
    out.update(peak_rss_mib=1.0, wall_seconds=60.0, other_processes_cpu_share=0.0)
    out["checks"] = profile_checks("qwen", out)
    assert {"c16 throughput / sequential", "c16 throughput / ideal", "router share of inference",
            "c1 latency / bare call (same clip)", "c2 p50 continuous / static engine",
            "short clip p50 under load / idle", "first delta of a 30 s segment / (prefill + 1.5 steps)"
            } <= set(out["checks"])
    table = report.markdown({"machine": "test machine", "profiles": {"qwen": out}})
    assert "dtype float32" in table and "| sequential (in-process) |" in table


def test_check_compares_or_only_reports():
    assert check(2.6, ">= 2.5")["passed"] and not check(0.7, "<= 0.6")["passed"]
    assert check(0.009, "< 0.01")["passed"] and not check(0.01, "< 0.01")["passed"]
    assert "passed" not in check(9000.0, "reported") and "passed" not in check(1.1, "info")


def row(concurrency: int, throughput: float, p50: float) -> dict:
    return {"concurrency": concurrency, "audio_seconds_per_second": throughput, "latency_p50": p50}


def test_demo_is_checked_against_the_peer_in_int8_and_float32_is_printed():
    out = {"service": [row(1, 5, 1), row(16, 30, 2)], "router_share_of_inference": 0.01,
           "baselines": [{"name": "sequential", "audio_seconds_per_second": 10},
                         {"name": "ideal", "audio_seconds_per_second": 40}],
           "service_same_model": [row(1, 5, 0.7), row(16, 30, 3.0)],
           "peer": {"int8": [row(1, 8, 1.0), row(16, 10, 6.0)], "float32": [row(1, 4, 2.0), row(16, 5, 12.0)]}}
    checks = profile_checks("demo", out)
    assert checks["c16 throughput / peer int8"] == {"value": 3.0, "target": ">= 1.5", "passed": True}
    assert checks["c16 p50 latency / peer int8"] == {"value": 0.5, "target": "<= 0.7", "passed": True}
    assert checks["c1 p50 latency / peer int8"]["value"] == pytest.approx(0.7)
    assert checks["c16 throughput / peer float32"] == {"value": 6.0, "target": "info"}
    assert checks["c16 throughput / sequential"]["value"] == 3.0 and checks["c16 throughput / ideal"]["value"] == 0.75


def test_full_size_targets():
    out = {"service": [row(1, 1, 10), row(16, 4.4, 50)], "router_share_of_inference": 0.004, "peak_rss_mib": 9000.0,
           "baselines": [{"name": "sequential", "audio_seconds_per_second": 1.0},
                         {"name": "ideal", "audio_seconds_per_second": 5.0}]}
    checks = profile_checks("qwen-full", out)
    assert checks["c16 throughput / sequential"] == {"value": 4.4, "target": ">= 4", "passed": True}
    assert checks["c16 throughput / ideal"] == {"value": pytest.approx(0.88), "target": ">= 0.85", "passed": True}
    assert checks["router share of inference"]["passed"]
    assert checks["peak RSS MiB (process, so far)"] == {"value": 9000.0, "target": "reported"}
    assert not any("float32" in name or "qwen-asr" in name for name in checks)  # not measured: not checked


def test_full_size_int8_is_checked_against_float32_and_qwen_asr_on_the_base_route():
    qwen_asr = {"dtype": "float32", "runs": [
        {"batch": 1, "order": "arrival", "seconds": 100.0, "audio_seconds": 150.0, "audio_seconds_per_second": 1.5},
        {"batch": 16, "order": "sorted", "seconds": 75.0, "audio_seconds": 150.0, "audio_seconds_per_second": 2.0}]}
    qwen_asr["best"] = qwen_asr["runs"][1]
    def full(concurrency: int, throughput: float, p50: float) -> dict:
        return {**row(concurrency, throughput, p50), "requests_per_second": 0.1, "real_time_factor": 1 / throughput,
                "latency_p95": p50, "latency_p99": p50, "statuses": {"200": 16}}

    baselines = [{"name": name, "audio_seconds_per_second": value, "requests_per_second": 0.1,
                  "real_time_factor": 1 / value} for name, value in (("sequential", 1.0), ("ideal", 5.0))]
    out = {"service": [full(1, 1, 10), full(16, 2, 50)], "router_share_of_inference": 0.004, "peak_rss_mib": 1.0,
           "baselines": baselines, "service_base_route": [full(16, 3.0, 40)],
           "service_float32_base_route": [full(16, 1.5, 80)],
           "qwen_asr": qwen_asr}
    checks = profile_checks("qwen-full", out)
    assert checks["c16 base route throughput / same service in float32"] == {"value": 2.0, "target": ">= 1.5",
                                                                            "passed": True}
    assert checks["c16 base route throughput / qwen-asr best offline"] == {"value": 1.5, "target": ">= 1.3",
                                                                          "passed": True}
    out.update(wall_seconds=60.0, other_processes_cpu_share=0.0, checks=checks,
               facts={"parameters": 1, "device": "cpu", "dtype": "int8", "isa": "AVX2-limited (...)"})
    table = report.markdown({"machine": "m", "isa": "AVX2-limited (...)", "profiles": {"qwen-full": out}})
    assert "| qwen-asr sorted batch 16 (float32, offline) = qwen-asr at its best offline | 16 | | 2.00 |" in table
    assert "| service, base route | 16 |" in table and "ISA AVX2-limited" in table


def test_length_mix_spans_one_to_thirty_seconds_of_real_speech():
    clips = length_mix(8)
    seconds = sorted(c.seconds for c in clips)
    assert seconds[0] == pytest.approx(1.0, abs=0.01) and seconds[-1] == pytest.approx(30.0, abs=0.01)
    assert all(b / a == pytest.approx(30 ** (1 / 7), rel=0.01) for a, b in itertools.pairwise(seconds))
    assert [c.seconds for c in clips] != seconds  # arrival order is not sorted
    assert all(abs(c.samples).max() > 0.01 for c in clips)


def test_engine_targets():
    out = {"service": [row(1, 1, 10), row(16, 6, 40)], "service_static": [row(1, 1, 11), row(16, 4, 100)],
           "under_load": {"ratio": 1.4}, "under_load_static": {"ratio": 19.0},
           "first_delta": {"first_delta_p50": 1.2, "bare": {"prefill": 1.0, "step": 0.2}}}
    checks = engine_checks(out, full_size=True)
    assert checks["c16 p50 continuous / static engine"] == {"value": 0.4, "target": "<= 0.5", "passed": True}
    assert checks["c16 throughput continuous / static engine"] == {"value": 1.5, "target": ">= 1.2", "passed": True}
    assert checks["short clip p50 under load / idle"]["passed"]
    assert checks["short clip p50 under load / idle (static engine)"] == {"value": 19.0, "target": "info"}
    assert checks["first delta of a 30 s segment / (prefill + 1.5 steps)"] == {
        "value": pytest.approx(0.923, abs=1e-3), "target": "<= 1", "passed": True}
    assert engine_checks(out, full_size=False)["c16 p50 continuous / static engine"]["target"] == "info"
