"""The audio encoder without work on padding equals transformers' encoder on the same mixed-length batch."""

from __future__ import annotations

import numpy as np
import torch

from models.qwen3_asr.encoder import encode_audio, nonempty_chunks
from models.qwen3_asr.recognizer import Qwen3ASRRecognizer
from models.recognition import SAMPLE_RATE, RecognitionItem
from models.tiny.qwen3_asr import build_tiny_qwen3_asr


def test_skipping_empty_chunks_gives_the_encoder_output_with_a_fraction_of_the_convolutions():
    model, processor = build_tiny_qwen3_asr(seed=0)
    recognizer = Qwen3ASRRecognizer(model, processor, device="cpu", dtype=torch.float32)
    rng = np.random.default_rng(0)
    items = [RecognitionItem(rng.normal(0, 0.1, int(s * SAMPLE_RATE)).astype(np.float32)) for s in (0.6, 29.5, 3.2, 1.0)]
    batch = recognizer.collate([recognizer.encode(item) for item in items])
    features, mask = batch["input_features"], batch["input_features_mask"]
    with torch.inference_mode():
        ours = encode_audio(model.model.audio_tower, model.model.multi_modal_projector, features, mask)
        reference = model.model.get_audio_features(features, mask).pooler_output
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    lengths, kept = nonempty_chunks(mask, model.model.audio_tower.n_window * 2)
    assert len(lengths) == 4 * 30 and len(kept) == 1 + 30 + 4 + 1  # 36 of 120 chunks hold audio
