"""Writing the benchmark's JSON, markdown table and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(results: dict, out: Path) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))


def facts_line(facts: dict) -> str:
    """'device cpu, dtype float32 (why), 1,727,428,224 parameters (+ 43,114,496 adapter)'."""
    line = f"device {facts['device']}, dtype {facts['dtype']}"
    if facts.get("dtype_reason"):
        line += f" ({facts['dtype_reason']})"
    line += f", {facts['parameters']:,} parameters"
    if facts.get("isa"):
        line += f"; ISA {facts['isa']}"
    if facts.get("adapter_parameters"):
        line += f" (+ {facts['adapter_parameters']:,} adapter)"
    return line


def markdown(results: dict) -> str:
    lines = [f"Machine: {results['machine']}", f"ISA: {results.get('isa', 'native')}", ""]
    for name, profile in results["profiles"].items():
        about = (f"Model: {facts_line(profile['facts'])}. Other processes used "
                 f"{profile['other_processes_cpu_share']:.0%} of the CPU during this profile "
                 f"({profile['wall_seconds'] / 60:.1f} min); peak RSS so far {profile['peak_rss_mib']:,.0f} MiB.")
        lines += [f"### {name}", "", about, "",
                  "| run | concurrency | req/s | audio s/s | RTF | p50 s | p95 s | p99 s | statuses |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += _service_rows(profile)
        for base in profile["baselines"]:
            lines.append(f"| {base['name']} (in-process) | 1 | {base['requests_per_second']:.2f} | "
                         f"{base['audio_seconds_per_second']:.2f} | {base['real_time_factor']:.3f} | | | | |")
        lines += ["", "| check | value | target | passed |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['value']:.3f} | {v['target']} | {_passed(v)} |" for k, v in profile["checks"].items()]
        if "wer" in profile:
            lines += ["", "WER on these clips: " + ", ".join(f"{k} {v:.1%}" for k, v in profile["wer"].items())]
        lines.append("")
    return "\n".join(lines)


def _service_rows(profile: dict) -> list[str]:
    rows = []
    for key, runs in profile.items():
        if key == "service" or (key.startswith("service_") and isinstance(runs, list)):
            label = "service" if key == "service" else key.replace("service_", "service, ").replace("_", " ")
            if key == "service_same_model":
                label = f"service, {profile.get('peer_model', '')} only (as the peer)"
            rows += [_row(label, row) for row in runs]
    for compute_type, runs in profile.get("peer", {}).items():
        rows += [_row(f"peer {profile.get('peer_model', '')} {compute_type} (faster-whisper-server)", row)
                 for row in runs]
    qwen_asr = profile.get("qwen_asr")
    if qwen_asr:
        for run in qwen_asr["runs"]:
            best = " = qwen-asr at its best offline" if run == qwen_asr["best"] else ""
            rows.append(f"| qwen-asr {run['order']} batch {run['batch']} ({qwen_asr['dtype']}, offline){best} | "
                        f"{run['batch']} | | {run['audio_seconds_per_second']:.2f} | "
                        f"{run['seconds'] / run['audio_seconds']:.3f} | | | | |")
    return rows


def _passed(check: dict) -> str:
    return "" if "passed" not in check else ("yes" if check["passed"] else "**no**")


def _row(label: str, row: dict) -> str:
    statuses = ", ".join(f"{k}:{v}" for k, v in row["statuses"].items())
    return (f"| {label} | {row['concurrency']} | {row['requests_per_second']:.2f} | "
            f"{row['audio_seconds_per_second']:.2f} | {row['real_time_factor']:.3f} | {row['latency_p50']:.2f} | "
            f"{row['latency_p95']:.2f} | {row['latency_p99']:.2f} | {statuses} |")


def plots(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, profile in results["profiles"].items():
        figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        conc = [r["concurrency"] for r in profile["service"]]
        left.plot(conc, [r["audio_seconds_per_second"] for r in profile["service"]], "o-", label="service")
        for compute_type, runs in profile.get("peer", {}).items():
            left.plot([r["concurrency"] for r in runs], [r["audio_seconds_per_second"] for r in runs], "s-",
                      label=f"peer {compute_type}")
        for base, style in zip(profile["baselines"], ("--", ":")):
            left.axhline(base["audio_seconds_per_second"], linestyle=style, color="gray", label=base["name"])
        left.set(xscale="log", xlabel="concurrency", ylabel="audio seconds per second", title=f"{name}: throughput")
        left.legend()
        for q in ("latency_p50", "latency_p95", "latency_p99"):
            right.plot(conc, [r[q] for r in profile["service"]], "o-", label=q.replace("latency_", ""))
        right.set(xscale="log", yscale="log", xlabel="concurrency", ylabel="seconds", title=f"{name}: latency")
        right.legend()
        figure.tight_layout()
        figure.savefig(out / f"{name}.png", dpi=100)
        plt.close(figure)
