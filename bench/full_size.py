"""The Qwen3-ASR benchmark profile at the real size: Qwen3-ASR-1.7B dimensions (DESIGN.md §3) with random
weights and the tiny byte-level vocabulary (264 tokens: the 151936-row embedding and LM head would only
add a final GEMM that random text does not need), a Mega-ASR-shaped adapter (every Linear of the encoder,
projector incl. conv_out and LLM, ranks 16/24/32) row-gated, the released router architecture (the demo
router), in the dtype `auto` picks on this machine (bf16 on CUDA and on CPUs with native bf16, fp32
elsewhere; printed and recorded).

Random weights never produce speech-shaped text, so the recognizer suppresses the end tokens and every
row decodes exactly its budget, ceil(duration x 3.5 tokens/s) + 8 (the header), capped at 256: a batch's
rows end at different steps, as real speech does.

`python -m bench.full_size` measures the step costs the benchmark is sized from (prefill of a 5 s and a
30 s clip, a decode step at batch 1, 8 and 16).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from app.engine.pipeline import Pipeline
from bench.qwen_profile import AUDIO_SIZE, TEXT_SIZE, build_bench_model
from models.device import Placement, resolve_placement
from models.linear_plans import pack_qwen3_asr
from models.mega_adapter import MegaAdapter
from models.qwen3_asr.recognizer import Qwen3ASRRecognizer
from models.recognition import RecognitionItem
from models.tiny.adapter import write_tiny_adapter

FULL_AUDIO_SIZE = {"encoder_layers": 24, "encoder_attention_heads": 16, "encoder_ffn_dim": 4096, "d_model": 1024,
                   "output_dim": 2048, "downsample_hidden_size": 480}
FULL_TEXT_SIZE = {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
                  "num_key_value_heads": 8, "head_dim": 128}
# "small": the ~45 M stand-in's dimensions, for dry runs of the full-size scripts on a CPU.
DIMENSIONS = {"real": (FULL_AUDIO_SIZE, FULL_TEXT_SIZE), "small": (AUDIO_SIZE, TEXT_SIZE)}
TOKENS_PER_SECOND = 3.5
MIN_BUDGET = 8
MAX_NEW_TOKENS = 256
ADAPTER_RANKS = (16, 24, 32)


@dataclass
class FullSizeModel:
    pipeline: Pipeline
    adapter_dir: Path
    facts: dict  # parameters, dtype, device: recorded in results.json and printed


def full_size_pipeline(seed: int = 0, device: str = "auto", dtype: str = "auto",
                       dims: str = "real") -> FullSizeModel:
    from app.profiles import demo_router_path
    from models.router.checkpoint import load_router
    from models.router.scorer import RouterScorer

    placement = resolve_placement(device, dtype)
    started = time.perf_counter()
    audio_size, text_size = DIMENSIONS[dims]
    model, processor = build_bench_model(seed, audio_size, text_size, placement.device, placement.dtype)
    adapter_dir = write_tiny_adapter(Path(tempfile.mkdtemp(prefix="bench-full-adapter-")), model, seed=seed,
                                     scale=0.02, ranks=ADAPTER_RANKS)
    packing = pack_qwen3_asr(model, placement.packed) if placement.packed else "none"
    adapter = MegaAdapter.attach(model, adapter_dir)  # after packing: on the packed layers
    recognizer = Qwen3ASRRecognizer(model, processor, device=placement.device, dtype=placement.dtype,
                                    adapter=adapter, max_new_tokens=MAX_NEW_TOKENS,
                                    tokens_per_second=TOKENS_PER_SECOND, min_new_tokens_budget=MIN_BUDGET,
                                    suppress_end_tokens=True)
    router, _ = load_router(demo_router_path())
    pipeline = Pipeline(recognizer, RouterScorer(router, device=placement.device), routing="router",
                        description="bench: Qwen3-ASR-1.7B dimensions, random weights + Mega-ASR-shaped adapter",
                        device=placement.device_name, dtype=placement.dtype_name, dtype_reason=placement.reason)
    facts = model_facts(model, adapter, placement)
    facts["build_seconds"], facts["dimensions"], facts["packing"] = time.perf_counter() - started, dims, packing
    return FullSizeModel(pipeline, adapter_dir, facts)


def model_facts(model: torch.nn.Module, adapter: MegaAdapter, placement: Placement) -> dict:
    from bench.setups import count_parameters

    return {"parameters": count_parameters(model),
            "adapter_parameters": adapter.num_parameters,
            "adapter_modules": len(adapter.module_names),
            "device": placement.device_name, "dtype": placement.dtype_name, "dtype_reason": placement.reason,
            "tokens_per_second": TOKENS_PER_SECOND, "max_new_tokens": MAX_NEW_TOKENS,
            "torch_threads": torch.get_num_threads()}


class ForwardClock:
    """Times every forward of the LM head: the first comes after the prefill (encoder + prompt), each
    later one is one decode step."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.marks: list[float] = []
        self._handle = model.lm_head.register_forward_hook(lambda *_: self._mark())
        self._device = next(model.parameters()).device

    def _mark(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
        self.marks.append(time.perf_counter())

    def close(self) -> None:
        self._handle.remove()


def timed_call(recognizer: Qwen3ASRRecognizer, items: list[RecognitionItem]) -> dict:
    """Prefill seconds and median decode-step seconds of one recognize() call."""
    clock = ForwardClock(recognizer.model)
    try:
        started = time.perf_counter()
        recognizer.recognize(items)
    finally:
        clock.close()
    steps = np.diff(clock.marks)
    return {"batch": len(items), "prefill_seconds": clock.marks[0] - started,
            "decode_step_seconds": float(np.median(steps)) if len(steps) else float("nan"),
            "decode_steps": len(steps)}


def step_costs(recognizer: Qwen3ASRRecognizer, speech: np.ndarray, steps: int = 6) -> list[dict]:
    """Prefill of a 5 s and a 30 s clip; decode steps at batch 1, 8 and 16 of 5 s clips (half robust)."""
    budget = (recognizer.max_new_tokens, recognizer.min_new_tokens_budget)
    recognizer.max_new_tokens = recognizer.min_new_tokens_budget = steps + 1
    try:
        def items(seconds: float, count: int) -> list[RecognitionItem]:
            audio = np.resize(speech, int(seconds * 16_000))
            return [RecognitionItem(audio, robust=bool(i % 2), language="en") for i in range(count)]

        recognizer.recognize(items(1.0, 1))  # warm-up: lazy initialisation is not a step cost
        rows = []
        for seconds, count in ((5.0, 1), (30.0, 1), (5.0, 8), (5.0, 16)):
            rows.append({"clip_seconds": seconds, **timed_call(recognizer, items(seconds, count))})
            print(json.dumps(rows[-1]), flush=True)
        return rows
    finally:
        recognizer.max_new_tokens, recognizer.min_new_tokens_budget = budget


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.full_size", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--dims", default="real", choices=sorted(DIMENSIONS), help="small: a dry run")
    parser.add_argument("--steps", type=int, default=6, help="decode steps timed per call")
    parser.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    args = parser.parse_args(argv)
    from bench.clips import english_recordings

    built = full_size_pipeline(device=args.device, dtype=args.dtype, dims=args.dims)
    print(json.dumps(built.facts), flush=True)
    speech = np.concatenate([clip.samples for clip in english_recordings()])
    rows = step_costs(built.pipeline.recognizer, speech, args.steps)
    result = {"facts": built.facts, "step_costs": rows,
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k.startswith("peak")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
