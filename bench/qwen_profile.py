"""The Qwen3-ASR benchmark profile: the real architecture with random weights at a reduced but non-trivial
size (model compute dominates on a CPU), the Mega-ASR adapter row-gated, and a fixed generation length so
every item costs the same work whatever its random text.

Also the two alternatives to mixed-route batches that the benchmark compares against:
- route-grouped: one recognizer call per route (two sub-batches);
- in-place toggle: merge the LoRA deltas into the weights for the robust sub-batch and subtract them
  afterwards (upstream `LoRADeltaSwitch`), decoding each sub-batch on the plain model.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from app.engine.pipeline import Pipeline
from models.mega_adapter import MegaAdapter, adapter_targets
from models.qwen3_asr.recognizer import Qwen3ASRRecognizer
from models.recognition import Recognition, RecognitionItem
from models.router.scorer import RouterScorer
from models.tiny.adapter import write_tiny_adapter
from models.tiny.qwen3_asr import build_tiny_processor, tiny_config_dict
from models.tiny.router import build_tiny_router

GENERATED_TOKENS = 24  # every item decodes exactly this many tokens
# The LM head rows of the tokens past ASCII (byte tokens 128-255, the special tokens) are zeroed: random
# weights then write ASCII (whole characters, as text is), so streamed deltas come with every token, as with
# a real vocabulary, instead of waiting on half of a random UTF-8 sequence.
ASCII_TOKENS = 128
# ~45 M parameters: 4 encoder layers of width 384, 6 LLM layers of width 768 (Qwen3-ASR-1.7B: 24 and 28
# layers of width 1024 and 2048).
AUDIO_SIZE = {"encoder_layers": 4, "encoder_attention_heads": 6, "encoder_ffn_dim": 1536, "d_model": 384,
              "output_dim": 768, "downsample_hidden_size": 128}
TEXT_SIZE = {"hidden_size": 768, "intermediate_size": 2304, "num_hidden_layers": 6, "num_attention_heads": 12,
             "num_key_value_heads": 4, "head_dim": 64}


def build_bench_model(seed: int = 0, audio_size: dict | None = None, text_size: dict | None = None,
                      device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                      ) -> tuple[torch.nn.Module, object]:
    """Random-weight Qwen3-ASR with the tiny tokenizer, built directly on `device` in `dtype`."""
    from transformers import Qwen3ASRConfig, Qwen3ASRForConditionalGeneration

    config_dict = tiny_config_dict()
    config_dict["audio_config"].update(audio_size or AUDIO_SIZE, initializer_range=0.02)
    config_dict["text_config"].update(text_size or TEXT_SIZE, initializer_range=0.02)
    config = Qwen3ASRConfig.from_dict(config_dict)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3ASRForConditionalGeneration._from_config(config, dtype=dtype).eval()
    with torch.no_grad():  # tied: the embedding rows too, which only special tokens of the prompt use
        model.lm_head.weight[ASCII_TOKENS:] = 0
    return model, build_tiny_processor()


def qwen_bench_pipeline(seed: int = 0) -> tuple[Pipeline, Path]:
    """(the pipeline, the adapter directory it attached)."""
    model, processor = build_bench_model(seed)
    adapter_dir = write_tiny_adapter(Path(tempfile.mkdtemp(prefix="bench-adapter-")), model, seed=seed,
                                     scale=0.05)
    adapter = MegaAdapter.attach(model, adapter_dir)
    recognizer = Qwen3ASRRecognizer(model, processor, adapter=adapter, max_new_tokens=GENERATED_TOKENS,
                                    min_new_tokens_budget=GENERATED_TOKENS, suppress_end_tokens=True)
    pipeline = Pipeline(recognizer, RouterScorer(build_tiny_router(seed)), routing="router",
                        description="bench: random-weight Qwen3-ASR (~45 M parameters) + Mega-ASR adapter",
                        device="cpu", dtype="float32", dtype_reason="the small profile always runs fp32 on CPU")
    return pipeline, adapter_dir


def in_place_toggle(model: torch.nn.Module, adapter_dir: Path) -> Callable[[bool], None]:
    """toggle(True) adds every LoRA delta B @ A into its weight, toggle(False) subtracts it (upstream
    switch). The dense delta is formed at each switch, in place: storing them would double the memory of a
    full-size model."""
    pairs = [(module.weight, pair) for _, module, pair in adapter_targets(model, adapter_dir)]
    state = {"merged": False}

    def toggle(robust: bool) -> None:
        if robust == state["merged"]:
            return
        with torch.no_grad():
            for weight, pair in pairs:
                weight.addmm_(pair.B, pair.A, alpha=1.0 if robust else -1.0)
        state["merged"] = robust

    return toggle


def route_mix_comparison(recognizer: Qwen3ASRRecognizer, toggle: Callable[[bool], None],
                         audios: Sequence[np.ndarray], repeats: int = 3) -> dict[str, float]:
    """Median seconds to decode a 50/50 route mix three ways, and the share of items whose text agrees
    with the mixed batch (1.0 expected: the three ways compute the same thing)."""
    items = [RecognitionItem(a, robust=bool(i % 2), language="en") for i, a in enumerate(audios)]
    base, robust = items[0::2], items[1::2]
    as_base = [RecognitionItem(i.audio, robust=False, language="en") for i in robust]

    def toggled() -> list[Recognition]:
        toggle(True)
        robust_results = recognizer.recognize(as_base)
        toggle(False)
        return _interleave(recognizer.recognize(base), robust_results)

    ways = {"mixed_batch": lambda: recognizer.recognize(items),
            "route_grouped": lambda: _interleave(recognizer.recognize(base), recognizer.recognize(robust)),
            "in_place_toggle": toggled}
    times: dict[str, list[float]] = {name: [] for name in ways}
    texts: dict[str, list[str]] = {}
    for _ in range(repeats):
        for name, run in ways.items():
            started = time.perf_counter()
            texts[name] = [r.text for r in run()]
            times[name].append(time.perf_counter() - started)
    result = {name: float(np.median(values)) for name, values in times.items()}
    for name in ("route_grouped", "in_place_toggle"):
        agree = sum(a == b for a, b in zip(texts[name], texts["mixed_batch"]))
        result[f"{name}_agreement"] = agree / len(items)
    return result


def _interleave(even: list[Recognition], odd: list[Recognition]) -> list[Recognition]:
    return [r for pair in zip(even, odd) for r in pair]
