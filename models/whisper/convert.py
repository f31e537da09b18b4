"""Convert a CTranslate2 (faster-whisper) Whisper model into a transformers WhisperForConditionalGeneration directory.

Input: `model.bin` (or its parts, in order) + the CT2 `config.json` (suppress ids, alignment heads, language
ids) + `tokenizer.json`. Output directory: config.json, generation_config.json, model.safetensors (fp32),
tokenizer files, preprocessor_config.json. Every transformers parameter must come from exactly one CT2
variable and every CT2 variable must be used: anything missing, left over or mis-shaped raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from models.whisper.ct2_format import Ct2Model, read_ct2_model

HEAD_DIM = 64  # every Whisper size uses 64-dim attention heads
MULTILINGUAL_MIN_VOCAB = 51865  # openai/whisper: n_vocab >= 51865 means the multilingual tokenizer
# CT2 spec attributes stored as scalar variables: value a Whisper model must have (None = informational only).
SPEC_ATTRIBUTES: dict[str, int | None] = {
    "activation": 3,  # ctranslate2.specs.Activation.GELU (exact erf GELU, as transformers' "gelu")
    "alibi": 0, "pre_norm": 1, "scale_embeddings": 0, "start_from_zero_embedding": 0,
    "num_heads": None, "alignment_heads": None, "alignment_layer": None,
}


class ConversionError(ValueError):
    """The CT2 model cannot be mapped one-to-one onto transformers' Whisper."""


@dataclass(frozen=True)
class Ct2WhisperSource:
    """Where the CT2 files of one Whisper model live."""

    model_files: tuple[Path, ...]  # model.bin, or model.bin.part1, model.bin.part2, ... in order
    config_json: Path
    tokenizer_json: Path

    @classmethod
    def from_paths(cls, src: Path | Sequence[Path]) -> Ct2WhisperSource:
        """A directory holding model.bin, or the model part files (config/tokenizer beside the first part)."""
        files = [Path(src)] if isinstance(src, (str, Path)) else [Path(p) for p in src]
        if len(files) == 1 and files[0].is_dir():
            files = [files[0] / "model.bin"]
        meta_dir = files[0].parent
        source = cls(tuple(files), meta_dir / "config.json", meta_dir / "tokenizer.json")
        missing = [str(p) for p in (*source.model_files, source.config_json, source.tokenizer_json) if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"CT2 Whisper model files not found: {missing}")
        return source


class _VariablePool:
    """CT2 variables handed out once each, so unused ones can be reported."""

    def __init__(self, ct2: Ct2Model) -> None:
        self._ct2 = ct2
        self.unused = {name for name, t in ct2.variables.items() if t.dim() > 0}

    def take(self, name: str) -> torch.Tensor:
        tensor = self._ct2.get(name)
        if not tensor.is_floating_point():
            raise ConversionError(f"CT2 variable {name!r} is {tensor.dtype}; quantized models are not supported")
        self.unused.discard(self._ct2.aliases.get(name, name))
        return tensor.float()  # fp16/bf16 checkpoints are stored as fp32 for the CPU


def _zero_bias(tensor: torch.Tensor, name: str) -> None:
    """Whisper's key projections have no bias; CT2 stores zeros there, transformers has no slot for them."""
    if torch.count_nonzero(tensor):
        raise ConversionError(f"{name}: key bias is not zero (max |b| = {tensor.abs().max():.3g}); cannot drop it")


def _map_attention(pool: _VariablePool, ct2: str, hf: str, fused_qkv: bool) -> dict[str, torch.Tensor]:
    """Self-attention: linear_0 = [q;k;v], linear_1 = out. Cross-attention: linear_0 = q, linear_1 = [k;v], linear_2 = out."""
    out: dict[str, torch.Tensor] = {}
    if fused_qkv:
        weights = pool.take(f"{ct2}/linear_0/weight").chunk(3, dim=0)  # 3 x [D, D]
        biases = pool.take(f"{ct2}/linear_0/bias").chunk(3, dim=0)  # 3 x [D]
        out_name = "linear_1"
    else:
        weights = (pool.take(f"{ct2}/linear_0/weight"), *pool.take(f"{ct2}/linear_1/weight").chunk(2, dim=0))
        biases = (pool.take(f"{ct2}/linear_0/bias"), *pool.take(f"{ct2}/linear_1/bias").chunk(2, dim=0))
        out_name = "linear_2"
    _zero_bias(biases[1], f"{ct2} k")
    for proj, weight, bias in zip(("q_proj", "k_proj", "v_proj"), weights, biases):
        out[f"{hf}.{proj}.weight"] = weight.contiguous()
        if proj != "k_proj":
            out[f"{hf}.{proj}.bias"] = bias.contiguous()
    out[f"{hf}.out_proj.weight"] = pool.take(f"{ct2}/{out_name}/weight")
    out[f"{hf}.out_proj.bias"] = pool.take(f"{ct2}/{out_name}/bias")
    return out


def _map_norm(pool: _VariablePool, ct2: str, hf: str) -> dict[str, torch.Tensor]:
    return {f"{hf}.weight": pool.take(f"{ct2}/gamma"), f"{hf}.bias": pool.take(f"{ct2}/beta")}


def _map_linear(pool: _VariablePool, ct2: str, hf: str) -> dict[str, torch.Tensor]:
    return {f"{hf}.weight": pool.take(f"{ct2}/weight"), f"{hf}.bias": pool.take(f"{ct2}/bias")}


def _map_layer(pool: _VariablePool, side: str, index: int) -> dict[str, torch.Tensor]:
    ct2, hf = f"{side}/layer_{index}", f"model.{side}.layers.{index}"
    out = _map_attention(pool, f"{ct2}/self_attention", f"{hf}.self_attn", fused_qkv=True)
    out |= _map_norm(pool, f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
    if side == "decoder":
        out |= _map_attention(pool, f"{ct2}/attention", f"{hf}.encoder_attn", fused_qkv=False)
        out |= _map_norm(pool, f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
    out |= _map_norm(pool, f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm")
    out |= _map_linear(pool, f"{ct2}/ffn/linear_0", f"{hf}.fc1")
    out |= _map_linear(pool, f"{ct2}/ffn/linear_1", f"{hf}.fc2")
    return out


def _count_layers(ct2: Ct2Model, side: str) -> int:
    indices = {int(m.group(1)) for name in ct2.variables if (m := re.match(rf"{side}/layer_(\d+)/", name))}
    if indices != set(range(len(indices))) or not indices:
        raise ConversionError(f"{side} layers are not numbered 0..N-1: {sorted(indices)}")
    return len(indices)


def _check_spec_attributes(ct2: Ct2Model, heads: int) -> None:
    for name, tensor in ct2.variables.items():
        if tensor.dim() > 0:
            continue
        attribute = name.rsplit("/", 1)[-1]
        if attribute not in SPEC_ATTRIBUTES:
            raise ConversionError(f"unknown CT2 spec attribute {name!r} = {tensor.item()}")
        expected = heads if attribute == "num_heads" else SPEC_ATTRIBUTES[attribute]
        if expected is not None and int(tensor.item()) != expected:
            raise ConversionError(f"{name} = {tensor.item()}, but a Whisper model needs {expected}")


def _tied_projection(pool: _VariablePool, ct2: Ct2Model, embeddings: torch.Tensor) -> torch.Tensor:
    """transformers ties proj_out to the token embeddings; CT2 aliases them (or stores an equal copy)."""
    name = "decoder/projection/weight"
    if (name in ct2.aliases or name in ct2.variables) and not torch.equal(pool.take(name), embeddings):
        raise ConversionError(f"{name} differs from decoder/embeddings/weight; transformers ties them")
    return embeddings


def build_state_dict(ct2: Ct2Model, progress: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Map CT2 variables to transformers names; returns (state dict, architecture sizes for the config)."""
    from tqdm.auto import tqdm

    embeddings = ct2.get("decoder/embeddings/weight")  # [vocab, d_model]
    sizes = {
        "vocab_size": embeddings.shape[0], "d_model": embeddings.shape[1],
        "encoder_layers": _count_layers(ct2, "encoder"), "decoder_layers": _count_layers(ct2, "decoder"),
        "num_mel_bins": ct2.get("encoder/conv1/weight").shape[1],  # [d_model, n_mels, 3]
        "encoder_ffn_dim": ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        "decoder_ffn_dim": ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        "max_source_positions": ct2.get("encoder/position_encodings/encodings").shape[0],
        "max_target_positions": ct2.get("decoder/position_encodings/encodings").shape[0],
    }
    sizes["encoder_attention_heads"] = sizes["decoder_attention_heads"] = sizes["d_model"] // HEAD_DIM
    _check_spec_attributes(ct2, sizes["d_model"] // HEAD_DIM)
    pool = _VariablePool(ct2)
    state = _map_linear(pool, "encoder/conv1", "model.encoder.conv1") | _map_linear(pool, "encoder/conv2", "model.encoder.conv2")
    state["model.encoder.embed_positions.weight"] = pool.take("encoder/position_encodings/encodings")
    state["model.decoder.embed_tokens.weight"] = pool.take("decoder/embeddings/weight")
    state["model.decoder.embed_positions.weight"] = pool.take("decoder/position_encodings/encodings")
    state["proj_out.weight"] = _tied_projection(pool, ct2, state["model.decoder.embed_tokens.weight"])
    for side in ("encoder", "decoder"):
        state |= _map_norm(pool, f"{side}/layer_norm", f"model.{side}.layer_norm")
        for index in tqdm(range(sizes[f"{side}_layers"]), desc=f"map {side}", disable=not progress):
            state |= _map_layer(pool, side, index)
    if pool.unused:
        raise ConversionError(f"CT2 variables not mapped to transformers: {sorted(pool.unused)}")
    return state, sizes


def _special_token_ids(tokenizer_json: Path) -> dict[str, int]:
    added = json.loads(tokenizer_json.read_text(encoding="utf-8"))["added_tokens"]
    return {token["content"]: token["id"] for token in added if token.get("special")}


def build_generation_config(ct2_config: dict, specials: dict[str, int], vocab_size: int) -> dict:
    """generation_config.json as transformers' WhisperForConditionalGeneration.generate reads it."""
    multilingual = vocab_size >= MULTILINGUAL_MIN_VOCAB
    eot, sot = specials["<|endoftext|>"], specials["<|startoftranscript|>"]
    config = {
        "decoder_start_token_id": sot, "bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot,
        "suppress_tokens": list(ct2_config["suppress_ids"]),
        "begin_suppress_tokens": list(ct2_config["suppress_ids_begin"]),
        "alignment_heads": [list(pair) for pair in ct2_config["alignment_heads"]],
        "no_timestamps_token_id": specials["<|notimestamps|>"],
        "prev_sot_token_id": specials["<|startofprev|>"],
        "max_initial_timestamp_index": 50,  # openai/whisper: max_initial_timestamp = 1.0 s
        "max_length": 448, "is_multilingual": multilingual, "return_timestamps": False,
        "forced_decoder_ids": None,
    }
    if multilingual:  # English-only models must not carry lang_to_id: generate() would run language detection
        id_to_token = {token_id: token for token, token_id in specials.items()}
        config["lang_to_id"] = {id_to_token[i]: i for i in ct2_config["lang_ids"]}
        config["task_to_id"] = {"transcribe": specials["<|transcribe|>"], "translate": specials["<|translate|>"]}
    return config


def _save_processor(source: Ct2WhisperSource, dst: Path, num_mel_bins: int, vocab_size: int) -> None:
    """Tokenizer (CT2 tokenizer.json + the 1501 timestamp tokens transformers' Whisper tokenizer expects)."""
    from tokenizers import AddedToken
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer

    specials = list(_special_token_ids(source.tokenizer_json))
    tokenizer = WhisperTokenizer(tokenizer_file=str(source.tokenizer_json), extra_special_tokens=specials)
    timestamps = [AddedToken(f"<|{i * 0.02:.2f}|>", lstrip=False, rstrip=False, normalized=False, special=False)
                  for i in range(vocab_size - len(tokenizer))]
    tokenizer.add_tokens(timestamps)
    if len(tokenizer) != vocab_size or tokenizer.convert_tokens_to_ids("<|0.00|>") != \
            tokenizer.convert_tokens_to_ids("<|notimestamps|>") + 1:
        raise ConversionError(f"tokenizer has {len(tokenizer)} tokens, model vocabulary {vocab_size}")
    feature_extractor = WhisperFeatureExtractor(feature_size=num_mel_bins)
    WhisperProcessor(feature_extractor, tokenizer).save_pretrained(dst)
    feature_extractor.save_pretrained(dst)  # preprocessor_config.json, for loaders that read it alone


def _check_against_model(state: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    misshaped = [f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                 if k in state and state[k].shape != v.shape]
    if missing or unexpected or misshaped:
        raise ConversionError(f"state dict mismatch: missing={missing} unexpected={unexpected} misshaped={misshaped}")


def convert_ct2_whisper(src_dir_or_files: Path | Sequence[Path], dst_dir: Path, progress: bool = True) -> Path:
    """Write a transformers Whisper directory at dst_dir (must not exist yet) from CT2 files; return dst_dir."""
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    source = Ct2WhisperSource.from_paths(src_dir_or_files)
    dst = Path(dst_dir)
    if dst.exists():
        raise FileExistsError(f"conversion target {dst} already exists")
    ct2 = read_ct2_model(source.model_files, expected_spec="WhisperSpec", progress=progress)
    state, sizes = build_state_dict(ct2, progress=progress)
    del ct2
    ct2_config = json.loads(source.config_json.read_text(encoding="utf-8"))
    generation = build_generation_config(ct2_config, _special_token_ids(source.tokenizer_json), sizes["vocab_size"])
    config = WhisperConfig(
        **sizes, activation_function="gelu", scale_embedding=False, tie_word_embeddings=True,
        **{k: generation[k] for k in ("decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id",
                                      "suppress_tokens", "begin_suppress_tokens")},
    )
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    _check_against_model(state, model)
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    model.generation_config = GenerationConfig(**generation)
    dst.mkdir(parents=True)
    model.save_pretrained(dst)
    _save_processor(source, dst, sizes["num_mel_bins"], sizes["vocab_size"])
    return dst
