"""`python -m bench.kernels`: the measurement the int8 plans are chosen from (models/linear_plans.py).

Every Linear shape of each model part, at the number of rows that part runs it with, timed as float32
(nn.Linear), int8 with per-row activation scales (the service's), fp16 weights and FBGEMM's per-tensor
int8 (not batch-invariant), 1 thread, best of N; speed-ups against float32. `--isa avx2` measures as on an
AVX2-only CPU (bench/isa.py). Writes JSON (`--out`) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from bench.isa import isa_label, restart_limited
from models.quantized import PackedLinear

# (part, rows, in, out): rows = what the part feeds one layer (Whisper: 1500 frames per clip; Qwen3-ASR 1.7B:
# ~390 audio positions and ~430 prompt tokens for a 30 s clip; a decode step: one row per running segment).
SHAPES = (
    ("whisper tiny encoder attention", 1500, 384, 384), ("whisper tiny encoder fc1", 1500, 384, 1536),
    ("whisper tiny encoder fc2", 1500, 1536, 384), ("whisper base encoder attention", 1500, 512, 512),
    ("whisper base encoder fc1", 1500, 512, 2048), ("whisper base encoder fc2", 1500, 2048, 512),
    ("whisper tiny decoder step x16", 16, 384, 1536), ("whisper base decoder step x16", 16, 512, 2048),
    ("whisper base proj_out step x1", 1, 512, 51865), ("whisper base proj_out step x16", 16, 512, 51865),
    ("qwen3-asr 1.7B encoder fc1", 390, 1024, 4096), ("qwen3-asr 1.7B prefill mlp", 430, 2048, 6144),
    ("qwen3-asr 1.7B decode mlp x1", 1, 2048, 6144), ("qwen3-asr 1.7B decode mlp x16", 16, 2048, 6144),
)
KINDS = ("int8", "fp16", "int8-tensor")


def best_ms(run: Callable[[], object], repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times) * 1e3


def measure_shape(count: int, in_features: int, out_features: int, repeats: int) -> dict:
    linear = torch.nn.Linear(in_features, out_features)
    x = torch.randn(count, in_features)
    row = {"rows": count, "in": in_features, "out": out_features}
    with torch.inference_mode():
        row["float32_ms"] = best_ms(lambda: linear(x), repeats)
        for kind in KINDS:
            packed = PackedLinear.from_linear(linear, kind)
            row[f"{kind}_ms"] = best_ms(lambda: packed(x), repeats)  # noqa: B023 (called before the next kind)
            row[f"{kind}_speedup"] = row["float32_ms"] / row[f"{kind}_ms"]
    return row


def measure(repeats: int) -> list[dict]:
    rows = []
    for part, count, in_features, out_features in SHAPES:
        rows.append({"part": part, **measure_shape(count, in_features, out_features, repeats)})
        row = rows[-1]
        print(f"{part:34} float32 {row['float32_ms']:8.2f} ms  " + "  ".join(
            f"{k} {row[f'{k}_ms']:7.2f} ms ({row[f'{k}_speedup']:.2f}x)" for k in KINDS), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kernels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--isa", default="native", choices=("native", "avx2"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    restart_limited(args.isa)
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(1)
    print(f"ISA: {isa_label()}; 1 thread, best of {args.repeats}", flush=True)
    result = {"isa": isa_label(), "rows": measure(args.repeats)}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
