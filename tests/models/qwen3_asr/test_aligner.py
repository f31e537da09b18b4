"""Qwen3-ForcedAligner: the production loader on the tiny aligner written in both released layouts, refusal
of wrong checkpoints, and a row's times independent of its batch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from models.qwen3_asr.aligner import Qwen3ForcedAligner, load_forced_aligner
from models.qwen3_asr.checkpoint import CheckpointError
from models.recognition import AlignmentItem
from models.tiny.aligner import save_tiny_aligner_hf, save_tiny_aligner_original
from models.tiny.qwen3_asr import save_tiny_original


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("aligner")
    return save_tiny_aligner_original(root / "original"), save_tiny_aligner_hf(root / "hf")


def items() -> list[AlignmentItem]:
    rng = np.random.default_rng(0)
    texts = [(6.0, "Go forward, ten well-known meters."), (6.5, "hello"), (0.3, "你好 world"), (2.0, "..."),
             (5.2, "one two three four five six")]
    return [AlignmentItem(audio=(0.1 * rng.standard_normal(int(16_000 * s))).astype(np.float32), text=t,
                          language="en") for s, t in texts]


def test_both_layouts_load_the_same_weights(layouts):
    original, _ = load_forced_aligner(layouts[0])
    hf, _ = load_forced_aligner(layouts[1])
    assert type(original).__name__ == "Qwen3ASRForTokenClassification"
    assert original.config.num_labels == hf.config.num_labels == 64
    theirs = hf.state_dict()
    for name, tensor in original.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name


def test_batched_times_equal_each_item_alone_on_both_layouts(layouts):
    for directory in layouts:
        aligner = Qwen3ForcedAligner.from_dir(directory)
        batch = items()
        together = aligner.align(batch)
        assert together == [aligner.align([item])[0] for item in batch]
        assert [len(words) for words in together] == [5, 1, 3, 0, 6]
        assert [w.word for w in together[0]] == ["Go", "forward", "ten", "well-known", "meters"]
        for words, item in zip(together, batch):
            assert all(0.0 <= w.start <= w.end <= len(item.audio) / 16_000 for w in words)


def test_the_class_logits_of_a_row_do_not_depend_on_its_neighbours(layouts):
    aligner = Qwen3ForcedAligner.from_dir(layouts[0])
    batch = items()[:2]
    encoded = [aligner._encode(item, aligner.split(item.text, "en").aligned) for item in batch]
    with torch.inference_mode():
        together = aligner.model(**aligner._collate(encoded)).logits
        alone = aligner.model(**aligner._collate(encoded[1:])).logits
    length = encoded[1]["input_ids"].shape[1]
    torch.testing.assert_close(together[1, :length], alone[0, :length], rtol=1e-4, atol=1e-4)


def test_a_missing_or_unexpected_weight_refuses_to_load(layouts, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(layouts[0], broken)
    tensors = load_file(broken / "model.safetensors")
    head = tensors.pop("thinker.lm_head.weight")
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing weights.*score.weight"):
        load_forced_aligner(broken)
    tensors.update({"thinker.lm_head.weight": head, "thinker.extra.weight": torch.zeros(2)})
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match="unexpected weights.*thinker.extra.weight"):
        load_forced_aligner(broken)


def test_a_recognizer_checkpoint_is_not_taken_for_an_aligner(tmp_path):
    with pytest.raises(CheckpointError, match="not a forced aligner"):
        load_forced_aligner(save_tiny_original(tmp_path / "asr"))
    config = json.loads((save_tiny_original(tmp_path / "asr2") / "config.json").read_text())
    assert "classify_num" not in config["thinker_config"]
