"""A tiny random-weight Qwen3-ASR (real architecture, real front-end) written in both released layouts.

Recipe (DESIGN.md §3): byte-level tokenizer (256 byte symbols, no merges) + the Qwen special tokens +
"<asr_text>" as a non-special added token; the ASR chat template; an audio encoder and LLM shrunk to a few
thousand parameters per layer but with the real mel front-end (128 bins, n_window 50, n_window_infer 800).
The same weights are saved in the "-hf" layout and in the original `thinker.*` layout, so the production
loader is exercised on real file layouts. Random weights give random text; that is the point of a fixture.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from models.qwen3_asr.checkpoint import ASR_CHAT_TEMPLATE, AUDIO_TOKENS

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_start|>", "<|audio_end|>",
                  "<|audio_pad|>", "<timestamp>")
ASR_TEXT_TOKEN = "<asr_text>"  # a plain (non-special) added token: it survives skip_special_tokens decoding
# Larger than the usual 0.02 so greedy decoding of random weights gives varied tokens with clear margins.
_INIT_RANGE = 0.5


def _byte_symbols() -> list[str]:
    """GPT-2 byte-level alphabet: the printable character standing for each byte value 0..255."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def tiny_vocab() -> dict[str, int]:
    """Byte symbols at ids 0..255, then the special tokens, then <asr_text> (264 entries)."""
    vocab = {symbol: byte for byte, symbol in enumerate(_byte_symbols())}
    for offset, token in enumerate((*SPECIAL_TOKENS, ASR_TEXT_TOKEN)):
        vocab[token] = 256 + offset
    return vocab


def build_tiny_processor() -> Any:
    from transformers import AddedToken, Qwen2Tokenizer, Qwen3ASRFeatureExtractor, Qwen3ASRProcessor

    tokenizer = Qwen2Tokenizer(vocab=tiny_vocab(), merges=[], eos_token="<|im_end|>",
                               pad_token="<|endoftext|>", unk_token="<|endoftext|>",
                               extra_special_tokens=dict(AUDIO_TOKENS))
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
                         special_tokens=True)
    tokenizer.add_tokens([AddedToken(ASR_TEXT_TOKEN, special=False, normalized=False)])
    return Qwen3ASRProcessor(feature_extractor=Qwen3ASRFeatureExtractor(), tokenizer=tokenizer,
                             chat_template=ASR_CHAT_TEMPLATE)


def tiny_config_dict() -> dict[str, Any]:
    """The hf-layout config of the tiny model (vocab size = the tokenizer's 264 entries)."""
    vocab = tiny_vocab()
    audio = {"num_mel_bins": 128, "encoder_layers": 2, "encoder_attention_heads": 4, "encoder_ffn_dim": 128,
             "d_model": 64, "output_dim": 64, "n_window": 50, "n_window_infer": 800, "downsample_hidden_size": 32,
             "initializer_range": _INIT_RANGE}
    text = {"vocab_size": len(vocab), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 4096,
            "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
            "initializer_range": _INIT_RANGE}
    return {"architectures": ["Qwen3ASRForConditionalGeneration"], "model_type": "qwen3_asr",
            "audio_config": audio, "text_config": text, "audio_token_id": vocab["<|audio_pad|>"],
            "timestamp_token_id": vocab["<timestamp>"], "pad_token_id": vocab["<|im_end|>"],
            "eos_token_id": [vocab["<|endoftext|>"], vocab["<|im_end|>"]], "tie_word_embeddings": True,
            "initializer_range": _INIT_RANGE}


def build_tiny_qwen3_asr(seed: int = 0) -> tuple[Any, Any]:
    """(Qwen3ASRForConditionalGeneration in eval mode, Qwen3ASRProcessor); same seed -> same weights."""
    from transformers import Qwen3ASRConfig, Qwen3ASRForConditionalGeneration

    config = Qwen3ASRConfig.from_dict(tiny_config_dict())
    with torch.random.fork_rng(devices=[]):  # do not disturb the caller's global RNG
        torch.manual_seed(seed)
        model = Qwen3ASRForConditionalGeneration(config)
    model.generation_config.do_sample = False
    return model.eval(), build_tiny_processor()


def save_tiny_hf(directory: str | Path, seed: int = 0) -> Path:
    """Write the "-hf" layout (config, model.safetensors, tokenizer, processor); return the directory."""
    directory = Path(directory)
    model, processor = build_tiny_qwen3_asr(seed)
    model.save_pretrained(str(directory))
    processor.save_pretrained(str(directory))
    return directory


def to_original_key(key: str) -> str:
    """Inverse of models.qwen3_asr.checkpoint.convert_original_key."""
    rules = (("model.multi_modal_projector.linear_1.", "thinker.audio_tower.proj1."),
             ("model.multi_modal_projector.linear_2.", "thinker.audio_tower.proj2."),
             ("model.language_model.", "thinker.model."), ("lm_head.", "thinker.lm_head."),
             ("model.", "thinker."))
    for new, old in rules:
        if key.startswith(new):
            return old + key[len(new):]
    raise ValueError(f"no original-layout name for {key!r}")


def original_config_dict(audio_size: dict[str, Any] | None = None, text_size: dict[str, Any] | None = None,
                         mrope_section: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """The tiny config (or one resized by `audio_size` / `text_size`, as the benchmark's) as the original layout
    writes it: nested under thinker_config, Whisper-style names, M-RoPE fields (sections summing to half the
    head dim: [24, 20, 20] at 1.7B), support_languages."""
    hf = tiny_config_dict()
    hf["audio_config"].update(audio_size or {})
    hf["text_config"].update(text_size or {})
    audio = dict(hf["audio_config"], max_source_positions=1500, conv_chunksize=500,
                 model_type="qwen3_asr_audio_encoder")
    text = dict(hf["text_config"], model_type="qwen3_asr_text",
                rope_scaling={"mrope_section": list(mrope_section or (2, 3, 3)), "interleaved": True,
                              "mrope_interleaved": True, "rope_type": "default", "type": "default"})
    thinker = {"audio_config": audio, "text_config": text, "audio_token_id": hf["audio_token_id"],
               "audio_start_token_id": tiny_vocab()["<|audio_start|>"], "initializer_range": _INIT_RANGE,
               "model_type": "qwen3_asr_thinker"}
    return {"architectures": ["Qwen3ASRForConditionalGeneration"], "model_type": "qwen3_asr",
            "support_languages": ["Chinese", "English"], "thinker_config": thinker}


def _write_original_weights(directory: Path, model: Any) -> None:
    """Two shards + index, like the released checkpoint; lm_head written out too (a copy of the tied one)."""
    from safetensors.torch import save_file

    state = {to_original_key(k): v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    shards = {"model-00001-of-00002.safetensors": {k: v for k, v in state.items() if "audio_tower" in k},
              "model-00002-of-00002.safetensors": {k: v for k, v in state.items() if "audio_tower" not in k}}
    weight_map = {}
    for name, tensors in shards.items():
        save_file(tensors, str(directory / name), metadata={"format": "pt"})
        weight_map.update({key: name for key in tensors})
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _write_original_tokenizer(directory: Path, extra: dict[str, Any] | None = None) -> None:
    """vocab.json + merges.txt + tokenizer_config.json (no tokenizer.json), as the original release ships."""
    vocab = tiny_vocab()
    (directory / "vocab.json").write_text(json.dumps({k: v for k, v in vocab.items() if v < 256}))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    added = {str(vocab[t]): {"content": t, "special": t != ASR_TEXT_TOKEN, "normalized": False,
                             "lstrip": False, "rstrip": False, "single_word": False}
             for t in (*SPECIAL_TOKENS, ASR_TEXT_TOKEN)}
    config = {"tokenizer_class": "Qwen2Tokenizer", "added_tokens_decoder": added, "eos_token": "<|im_end|>",
              "pad_token": "<|endoftext|>", "unk_token": None, "bos_token": None, "errors": "replace",
              "model_max_length": 65536, "split_special_tokens": False, **(extra or {})}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def save_tiny_original(directory: str | Path, seed: int = 0) -> Path:
    """Write the original layout (thinker_config + thinker.* shards, tokenizer, preprocessor config, chat
    template) holding the same weights as save_tiny_hf(seed); return the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model, _ = build_tiny_qwen3_asr(seed)
    (directory / "config.json").write_text(json.dumps(original_config_dict(), indent=2))
    _write_original_weights(directory, model)
    write_original_assets(directory)
    return directory


def write_original_assets(directory: Path, extra_tokenizer_config: dict[str, Any] | None = None) -> None:
    """Tokenizer, preprocessor config and chat template of the original layout."""
    _write_original_tokenizer(directory, extra_tokenizer_config)
    preprocessor = {"feature_extractor_type": "WhisperFeatureExtractor", "processor_class": "Qwen3ASRProcessor",
                    "feature_size": 128, "sampling_rate": 16000, "hop_length": 160, "n_fft": 400,
                    "chunk_length": 30, "padding_value": 0.0, "return_attention_mask": True}
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    (directory / "chat_template.json").write_text(json.dumps({"chat_template": ASR_CHAT_TEMPLATE}))
