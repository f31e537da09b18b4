"""The full-size peer: the official `qwen-asr` package (PyPI 0.0.6, transformers backend) on the same random
Qwen3-ASR-1.7B-sized weights and the same clips, "at its best offline".

- Its own virtual environment, made here and kept out of the service's dependencies: Python 3.11, the
  local torch==2.13.0 CPU wheel first (so pip does not fetch a CUDA build), then qwen-asr==0.0.6 (which pins
  transformers 4.57.6 and ships its own modeling code).
- The weights: the benchmark model rebuilt from the same seed (bench/full_size.py) and written in the
  ORIGINAL layout qwen-asr loads (thinker.* names, nested thinker_config, M-RoPE rope_scaling with
  mrope_section [24, 20, 20], rope_theta 1e6, the audio special tokens in the tokenizer config).
- Runs (bench/qwen_asr_worker.py, in a separate process after the service's runs: two 1.7 B models do not
  fit in memory at once): batch 1 and batch 16, in arrival order and sorted by length (sorted is skipped
  when all clips fit in one batch: the same batch, padded alike); each batch decodes
  the largest of our token budgets in it (random weights never stop; both sides generate the same tokens
  per clip at batch 1, and a static batch of 16 computes every row to its longest budget, as it would).
- dtype: what is best for it on this CPU: bf16 where the CPU multiplies bf16 natively, else float32.
No LoRA: compare with our service routed to base.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.clips import Clip
from bench.isa import active_isa, limited_environment

SPECS = ("qwen-asr==0.0.6",)
TORCH_SPEC = "torch==2.13.0"  # the local CPU wheel (pip's find-links); first, so qwen-asr does not pull CUDA
RUNS = ({"batch": 1, "order": "arrival"}, {"batch": 16, "order": "arrival"}, {"batch": 16, "order": "sorted"})
AUDIO_TOKENS = {"audio_token": "<|audio_pad|>", "audio_bos_token": "<|audio_start|>",
                "audio_eos_token": "<|audio_end|>"}


def ensure_venv(root: Path) -> Path:
    python = root / "bin" / "python"
    marker = root / ".installed"
    if not marker.is_file() or marker.read_text() != " ".join((TORCH_SPEC, *SPECS)):
        subprocess.run(["python3.11", "-m", "venv", str(root)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, TORCH_SPEC], check=True)
        subprocess.run([*pip, *SPECS], check=True)
        marker.write_text(" ".join((TORCH_SPEC, *SPECS)))
    return python


def write_checkpoint(directory: Path, seed: int = 0, dims: str = "real") -> Path:
    """The benchmark model (same seed: same weights as the service's) in the original layout."""
    from bench.full_size import DIMENSIONS
    from bench.qwen_profile import build_bench_model
    from models.tiny.qwen3_asr import original_config_dict, to_original_key, write_original_assets

    audio_size, text_size = DIMENSIONS[dims]
    model, _ = build_bench_model(seed, audio_size, text_size, "cpu", torch.float32)
    directory.mkdir(parents=True, exist_ok=True)
    mrope = (24, 20, 20) if text_size["head_dim"] == 128 else None
    config = original_config_dict(audio_size, text_size, mrope_section=mrope)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    from safetensors.torch import save_file

    state = model.state_dict()
    tensors = {to_original_key(k): v for k, v in state.items() if k != "lm_head.weight"}
    tensors["thinker.lm_head.weight"] = state["lm_head.weight"].clone()  # tied: its own copy on disk
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    write_original_assets(directory, extra_tokenizer_config={"extra_special_tokens": AUDIO_TOKENS, **AUDIO_TOKENS})
    del model, state, tensors
    return directory


def _budget(seconds: float) -> int:
    """Our service's token budget for a segment of this length (Qwen3ASRRecognizer.token_budget)."""
    from bench.full_size import MAX_NEW_TOKENS, MIN_BUDGET, TOKENS_PER_SECOND

    return min(MAX_NEW_TOKENS, max(MIN_BUDGET, math.ceil(seconds * TOKENS_PER_SECOND) + 8))


def best_dtype() -> str:
    from models.device import cpu_bf16_instructions

    return "bfloat16" if cpu_bf16_instructions() else "float32"


def measure_qwen_asr(cache: Path, clips: list[Clip], dims: str = "real", threads: int = 2) -> dict:
    python = ensure_venv(cache / "qwen-asr-venv")
    with tempfile.TemporaryDirectory(prefix="qwen-asr-peer-") as scratch:
        work = Path(scratch)
        checkpoint = write_checkpoint(work / "Qwen3-ASR-bench", dims=dims)
        entries = []
        for index, clip in enumerate(clips):
            path = work / f"clip{index}.npy"
            np.save(path, clip.samples.astype(np.float32))
            entries.append({"npy": str(path), "seconds": clip.seconds, "budget": _budget(clip.seconds)})
        # Sorting changes nothing when every clip fits in one batch (the same rows, padded alike): skipped then.
        runs = [r for r in RUNS if not (r["order"] == "sorted" and len(clips) <= r["batch"])]
        spec = {"checkpoint": str(checkpoint), "dtype": best_dtype(), "threads": threads, "clips": entries,
                "runs": runs}
        (work / "spec.json").write_text(json.dumps(spec))
        worker = Path(__file__).with_name("qwen_asr_worker.py")
        env = limited_environment(active_isa(), base={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                                                     "TRANSFORMERS_OFFLINE": "1"})
        done = subprocess.run([str(python), str(worker), str(work / "spec.json")], env=env, check=False,
                              capture_output=True, text=True, cwd=scratch)
        if done.returncode != 0:
            raise RuntimeError(f"qwen-asr worker failed: {done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    result["best"] = max(result["runs"], key=lambda r: r["audio_seconds_per_second"])
    for run in result["runs"]:
        print(f"[qwen-asr] batch {run['batch']} {run['order']}: {run['audio_seconds_per_second']:.3f} audio s/s "
              f"({run['seconds']:.1f} s)", flush=True)
    return result


if __name__ == "__main__":  # a dry run at small dimensions: python -m bench.qwen_asr_peer
    from bench.clips import length_mix

    print(json.dumps(measure_qwen_asr(Path.home() / ".cache" / "mega-asr" / "bench", length_mix(4),
                                      dims=sys.argv[1] if len(sys.argv) > 1 else "small"), indent=1)[-2000:])
