"""Load a Qwen3-ASR checkpoint in either released layout, refusing anything that does not match exactly.

Two layouts exist (DESIGN.md §3):
- "hf": `Qwen/Qwen3-ASR-1.7B-hf`, what transformers' `Qwen3ASRForConditionalGeneration` expects.
- "original": `Qwen/Qwen3-ASR-1.7B` and the copy inside the Mega-ASR checkpoint: config under
  `thinker_config`, weights under `thinker.*`. transformers' from_pretrained does NOT fail on it: it builds a
  default-size model with random weights and only warns. So we never use from_pretrained for weights: we
  build the model from the (converted) config and copy every tensor ourselves, after checking that the
  files name exactly the model's parameters with exactly their shapes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

import torch

Layout = Literal["hf", "original"]

# The upstream converter's rules, applied in order as prefix replacements (DESIGN.md §3).
ORIGINAL_KEY_RULES: tuple[tuple[str, str], ...] = (
    ("thinker.model.", "model.language_model."),
    ("thinker.lm_head.", "lm_head."),
    ("thinker.", "model."),
    ("model.audio_tower.proj1.", "model.multi_modal_projector.linear_1."),
    ("model.audio_tower.proj2.", "model.multi_modal_projector.linear_2."),
)
# Fields of the original sub-configs that the transformers configs do not have (or must not inherit).
_COMMON_UNUSED = (
    "_name_or_path", "architectures", "dtype", "torch_dtype", "model_type", "use_bfloat16",
    "add_cross_attention", "chunk_size_feed_forward", "cross_attention_hidden_size", "decoder_start_token_id",
    "finetuning_task", "id2label", "label2id", "is_decoder", "is_encoder_decoder", "output_attentions",
    "output_hidden_states", "prefix", "problem_type", "pruned_heads", "return_dict", "sep_token_id",
    "task_specific_params", "tf_legacy_loss", "tie_encoder_decoder", "tokenizer_class", "torchscript",
)
_AUDIO_UNUSED = _COMMON_UNUSED + (
    "max_source_positions", "pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings",
    "conv_chunksize",
)
_TEXT_UNUSED = _COMMON_UNUSED + (
    "decoder_sparse_step", "moe_intermediate_size", "num_experts_per_tok", "num_experts", "norm_topk_prob",
    "output_router_logits", "router_aux_loss_coef", "mlp_only_layers",
)
_MROPE_KEYS = ("mrope_section", "interleaved", "mrope_interleaved", "type")
_THINKER_KEPT = ("audio_config", "text_config", "audio_token_id", "initializer_range")
_MAX_NAMES_SHOWN = 50


class CheckpointError(RuntimeError):
    """A checkpoint directory that does not describe exactly the model it claims to (missing, extra or
    mis-shaped weights, unreadable config): the service must refuse to start on it."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path.name} not found in {path.parent}") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc


def weight_files(directory: str | Path) -> list[Path]:
    """The safetensors files: the shards named by model.safetensors.index.json, else model.safetensors."""
    directory = Path(directory)
    index_path = directory / "model.safetensors.index.json"
    if index_path.exists():
        shard_names = sorted(set(_read_json(index_path).get("weight_map", {}).values()))
        missing = [name for name in shard_names if not (directory / name).exists()]
        if not shard_names or missing:
            raise CheckpointError(f"{index_path} names missing or no shard files: {missing or '(empty)'}")
        return [directory / name for name in shard_names]
    single = directory / "model.safetensors"
    if single.exists():
        return [single]
    raise CheckpointError(f"no model.safetensors or model.safetensors.index.json in {directory}")


def read_tensor_shapes(directory: str | Path) -> dict[str, tuple[tuple[int, ...], Path]]:
    """Every tensor name in the checkpoint -> (shape, file), without loading any data."""
    from safetensors import safe_open

    found: dict[str, tuple[tuple[int, ...], Path]] = {}
    for path in weight_files(directory):
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            for key in list(handle.keys()):
                if key in found:
                    raise CheckpointError(f"tensor {key!r} appears in both {found[key][1].name} and {path.name}")
                found[key] = (tuple(handle.get_slice(key).get_shape()), path)
    index_path = Path(directory) / "model.safetensors.index.json"
    if index_path.exists():
        listed = set(_read_json(index_path)["weight_map"])
        if listed != set(found):
            raise CheckpointError(f"{index_path.name} and the shards disagree on tensor names: "
                                  f"{_names(sorted(listed ^ set(found)))}")
    return found


def detect_layout(directory: str | Path) -> Layout:
    """"original" when config.json has `thinker_config` or the weights are named `thinker.*`; else "hf"."""
    config = _read_json(Path(directory) / "config.json")
    if "thinker_config" in config:
        return "original"
    if any(name.startswith("thinker.") for name in read_tensor_shapes(directory)):
        return "original"
    return "hf"


def convert_original_key(key: str) -> str:
    """Original-layout tensor name -> hf-layout name (the rules apply in order, each to the result so far)."""
    for old, new in ORIGINAL_KEY_RULES:
        if key.startswith(old):
            key = new + key[len(old):]
    return key


def convert_original_config(original: dict[str, Any]) -> dict[str, Any]:
    """Original config.json (with `thinker_config`) -> a dict Qwen3ASRConfig.from_dict accepts."""
    config = copy.deepcopy(original)
    config.pop("support_languages", None)
    thinker = config.pop("thinker_config", {})
    for key in _THINKER_KEPT:
        if key in thinker:
            config[key] = thinker[key]
    audio = config.get("audio_config")
    if isinstance(audio, dict):
        if "encoder_attention_heads" in audio:
            audio["num_attention_heads"] = audio.pop("encoder_attention_heads")
        if "num_attention_heads" in audio:
            audio.setdefault("num_key_value_heads", audio["num_attention_heads"])  # MHA encoder
        # Chunks are n_window*2 = 100 mel frames -> 13 post-CNN positions (the original says 1500, Whisper's).
        audio["max_position_embeddings"] = 13
        for key in _AUDIO_UNUSED:
            audio.pop(key, None)
    text = config.get("text_config")
    if isinstance(text, dict):
        for key in _TEXT_UNUSED:
            text.pop(key, None)
        rope = text.get("rope_scaling")
        if isinstance(rope, dict):
            for key in _MROPE_KEYS:
                rope.pop(key, None)
    return config


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMES_SHOWN])
    more = f" ... and {len(names) - _MAX_NAMES_SHOWN} more" if len(names) > _MAX_NAMES_SHOWN else ""
    return f"{len(names)}: {shown}{more}"


def _build_model(config_dict: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Any:
    """The architecture the config describes, allocated on `device` in `dtype`, weights left uninitialised
    (every parameter is then overwritten by the checked copy)."""
    from transformers import Qwen3ASRConfig, Qwen3ASRForConditionalGeneration
    from transformers.initialization import no_init_weights
    from transformers.modeling_utils import local_torch_dtype

    try:
        config = Qwen3ASRConfig.from_dict(config_dict)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"config.json does not describe a Qwen3-ASR model: {exc}") from exc
    with no_init_weights(), local_torch_dtype(dtype), device:
        model = Qwen3ASRForConditionalGeneration(config)
    model.tie_weights()
    return model


def _lm_head_is_tied(model: Any) -> bool:
    lm_head = getattr(model, "lm_head", None)  # a token-classification model (the aligner) has none
    return lm_head is not None and lm_head.weight is model.get_input_embeddings().weight


def _plan_copy(model: Any, shapes: dict[str, tuple[tuple[int, ...], Path]], rename: Any,
               source: str) -> dict[str, tuple[str, Path]]:
    """Model parameter name -> (checkpoint tensor name, file); raises unless names and shapes match exactly.

    With tied embeddings the checkpoint may omit lm_head.weight; when present it is checked against the
    embedding after loading rather than copied (copying would overwrite the shared tensor).
    """
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    plan: dict[str, tuple[str, Path]] = {}
    clashes = []
    for key, (_, path) in shapes.items():
        target = rename(key)
        if target in plan:
            clashes.append(f"{plan[target][0]} and {key} -> {target}")
        plan[target] = (key, path)
    optional = {"lm_head.weight"} if _lm_head_is_tied(model) else set()
    missing = sorted(set(expected) - set(plan) - optional)
    unexpected = sorted(f"{plan[name][0]}" for name in set(plan) - set(expected))
    mismatched = sorted(f"{plan[name][0]} {list(shapes[plan[name][0]][0])} != model {list(expected[name])}"
                        for name in set(plan) & set(expected) if shapes[plan[name][0]][0] != expected[name])
    problems = [f"{label} ({_names(names)})" for label, names in (
        ("missing weights, hf-layout names", missing), ("unexpected weights", unexpected),
        ("shape mismatches", mismatched), ("tensors mapping to the same name", clashes)) if names]
    if problems:
        raise CheckpointError(f"refusing to load {source}: " + "; ".join(problems))
    return plan


def _copy_weights(model: Any, plan: dict[str, tuple[str, Path]]) -> None:
    from safetensors import safe_open

    targets = model.state_dict()  # detached views sharing storage with the parameters
    tied_lm_head = None
    by_file: dict[Path, list[tuple[str, str]]] = {}
    for target, (key, path) in plan.items():
        by_file.setdefault(path, []).append((target, key))
    with torch.no_grad():
        for path, pairs in by_file.items():
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                for target, key in pairs:
                    if target == "lm_head.weight" and _lm_head_is_tied(model):
                        tied_lm_head = handle.get_tensor(key)
                    else:
                        targets[target].copy_(handle.get_tensor(key))
        embedding = model.get_input_embeddings().weight
        if tied_lm_head is not None and not torch.equal(tied_lm_head.to(embedding), embedding):
            raise CheckpointError("lm_head.weight differs from the token embedding although the config ties "
                                  "them (tie_word_embeddings=true): refusing an inconsistent checkpoint")


# Renders the prompt of DESIGN.md §3 (the upstream converter ships an equivalent one with the -hf layout):
# system turn = context, user turn = one audio placeholder per audio part, optional assistant prefill
# (used with continue_final_message to force a language), optional generation prompt.
ASR_CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='', audio='') -%}"
    "{%- for m in messages -%}"
    "{%- set parts = [{'type': 'text', 'text': m.content}] if m.content is string else m.content -%}"
    "{%- for p in parts -%}"
    "{%- if m.role == 'system' and p.type == 'text' -%}{%- set ns.system = ns.system + p.text -%}{%- endif -%}"
    "{%- if m.role == 'user' and (p.type == 'audio' or 'audio' in p or 'audio_url' in p) -%}"
    "{%- set ns.audio = ns.audio + '<|audio_start|><|audio_pad|><|audio_end|>' -%}{%- endif -%}"
    "{%- endfor -%}{%- endfor -%}"
    "{{- '<|im_start|>system\\n' + ns.system + '<|im_end|>\\n<|im_start|>user\\n' + ns.audio + '<|im_end|>\\n' -}}"
    "{%- for m in messages if m.role == 'assistant' -%}"
    "{%- set parts = [{'type': 'text', 'text': m.content}] if m.content is string else m.content -%}"
    "{{- '<|im_start|>assistant\\n' -}}{%- for p in parts if p.type == 'text' -%}{{- p.text -}}{%- endfor -%}"
    "{{- '<|im_end|>\\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
AUDIO_TOKENS = {"audio_token": "<|audio_pad|>", "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>"}
# The front-end the model was trained with (DESIGN.md §3); an original preprocessor_config must agree.
_FRONT_END = {"feature_size": 128, "sampling_rate": 16000, "hop_length": 160, "n_fft": 400}


def _directory_chat_template(directory: Path) -> str | None:
    if (directory / "chat_template.jinja").exists():
        return (directory / "chat_template.jinja").read_text(encoding="utf-8")
    if (directory / "chat_template.json").exists():
        return _read_json(directory / "chat_template.json").get("chat_template")
    return None


def _original_tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    vocab = tokenizer.get_vocab()
    for attribute, token in AUDIO_TOKENS.items():
        if token not in vocab:
            raise CheckpointError(f"tokenizer in {directory} has no {token!r} token")
        if getattr(tokenizer, attribute, None) is None:
            setattr(tokenizer, attribute, token)  # the processor looks the audio tokens up by these names
    return tokenizer


def _original_feature_extractor(directory: Path) -> Any:
    from transformers import Qwen3ASRFeatureExtractor

    path = directory / "preprocessor_config.json"
    declared = _read_json(path) if path.exists() else {}
    wrong = {k: declared[k] for k, v in _FRONT_END.items() if k in declared and declared[k] != v}
    if wrong:
        raise CheckpointError(f"{path} declares a front-end this loader does not implement: {wrong}")
    return Qwen3ASRFeatureExtractor()


def load_processor(directory: str | Path, layout: Layout) -> Any:
    """Qwen3ASRProcessor for a checkpoint directory; the ASR chat template when the directory has none."""
    from transformers import Qwen3ASRProcessor

    directory = Path(directory)
    if layout == "hf":
        processor = Qwen3ASRProcessor.from_pretrained(str(directory), local_files_only=True)
    else:
        processor = Qwen3ASRProcessor(feature_extractor=_original_feature_extractor(directory),
                                      tokenizer=_original_tokenizer(directory),
                                      chat_template=_directory_chat_template(directory))
    if not processor.chat_template:
        processor.chat_template = ASR_CHAT_TEMPLATE
    return processor


def load_qwen3_asr(directory: str | Path, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """(Qwen3ASRForConditionalGeneration in eval mode, Qwen3ASRProcessor) from either layout.

    Raises CheckpointError on any missing, unexpected or mis-shaped weight, naming them.
    """
    directory = Path(directory)
    layout = detect_layout(directory)
    config_dict = _read_json(directory / "config.json")
    if layout == "original":
        config_dict = convert_original_config(config_dict)
    model = _build_model(config_dict, torch.device(device), dtype)
    rename = convert_original_key if layout == "original" else (lambda key: key)
    plan = _plan_copy(model, read_tensor_shapes(directory), rename, f"{layout}-layout checkpoint {directory}")
    _copy_weights(model, plan)
    return model.eval(), load_processor(directory, layout)
