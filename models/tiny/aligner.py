"""A tiny random-weight Qwen3-ForcedAligner in both released layouts, for tests and the tests profile.

The real architecture (Qwen3ASRForTokenClassification: the tiny Qwen3-ASR of models.tiny.qwen3_asr with a
class head instead of the vocabulary head) and the real config fields (`classify_num` / `num_labels`,
`timestamp_token_id`, `timestamp_segment_time`), written like the Hub releases: the original layout
(`thinker_config`, `thinker.*` shards, the head at `thinker.lm_head`) and the "-hf" layout (`score`). Random
weights give random (but deterministic) times; that is the point of a fixture.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from models.tiny.qwen3_asr import (
    _write_original_tokenizer,
    build_tiny_processor,
    original_config_dict,
    tiny_config_dict,
    to_original_key,
)

CLASSES = 64  # 64 classes x 80 ms = 5.12 s: random times fall inside a 6 s test clip
SEGMENT_MS = 80


def tiny_aligner_config() -> dict[str, Any]:
    config = tiny_config_dict()
    config["text_config"] = dict(config["text_config"], tie_word_embeddings=False)
    config.update(architectures=["Qwen3ASRForTokenClassification"], num_labels=CLASSES,
                  timestamp_segment_time=SEGMENT_MS, tie_word_embeddings=False)
    return config


def build_tiny_aligner(seed: int = 0) -> tuple[Any, Any]:
    """(Qwen3ASRForTokenClassification in eval mode, Qwen3ASRProcessor); same seed -> same weights."""
    from transformers import Qwen3ASRConfig, Qwen3ASRForTokenClassification

    config = Qwen3ASRConfig.from_dict(tiny_aligner_config())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ASRForTokenClassification(config)
    return model.eval(), build_tiny_processor()


def save_tiny_aligner_hf(directory: str | Path, seed: int = 0) -> Path:
    directory = Path(directory)
    model, processor = build_tiny_aligner(seed)
    model.save_pretrained(str(directory))
    processor.save_pretrained(str(directory))
    return directory


def _original_key(key: str) -> str:
    return "thinker.lm_head." + key[len("score."):] if key.startswith("score.") else to_original_key(key)


def save_tiny_aligner_original(directory: str | Path, seed: int = 0) -> Path:
    """The original layout holding the same weights as save_tiny_aligner_hf(seed)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model, _ = build_tiny_aligner(seed)
    config = original_config_dict()
    config["thinker_config"]["text_config"]["tie_word_embeddings"] = False
    config["thinker_config"].update(model_type="qwen3_forced_aligner", classify_num=CLASSES)
    config.update(timestamp_token_id=tiny_config_dict()["timestamp_token_id"], timestamp_segment_time=SEGMENT_MS)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    state = {_original_key(k): v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    _write_original_tokenizer(directory)
    return directory
