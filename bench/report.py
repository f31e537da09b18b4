"""Writing the benchmark's JSON, markdown table and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(results: dict, out: Path) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))


def markdown(results: dict) -> str:
    lines = [f"Machine: {results['machine']}", ""]
    for name, profile in results["profiles"].items():
        lines += [f"### {name}", "", "| run | concurrency | req/s | audio s/s | RTF | p50 s | p95 s | p99 s | statuses |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in profile["service"]:
            lines.append(_row("service", row))
        for row in profile.get("peer", []):
            lines.append(_row("peer (faster-whisper-server)", row))
        for row in profile.get("service_same_model", []):
            lines.append(_row("service, same model as peer", row))
        for base in profile["baselines"]:
            lines.append(f"| {base['name']} (in-process) | 1 | {base['requests_per_second']:.2f} | "
                         f"{base['audio_seconds_per_second']:.2f} | {base['real_time_factor']:.3f} | | | | |")
        lines += ["", "| check | value | target |", "|---|---|---|"]
        lines += [f"| {k} | {v['value']:.3f} | {v['target']} |" for k, v in profile["checks"].items()]
        lines.append("")
    return "\n".join(lines)


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
        if profile.get("peer"):
            left.plot([r["concurrency"] for r in profile["peer"]],
                      [r["audio_seconds_per_second"] for r in profile["peer"]], "s-", label="peer")
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
