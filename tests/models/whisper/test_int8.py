"""The real Whisper models with int8 Linear layers (models.linear_plans.WHISPER): rows that join while others
decode, with their own prompts and languages, give exactly what each row gets alone; transcripts stay within
the fp32 WER bounds. FBGEMM's per-tensor scheme is checked to break the same property, so the check can fail."""

from __future__ import annotations

import concurrent.futures

import pytest
import torch

from models.decoding.session import decode_all
from models.quantized import PackedLinear, kernels_missing
from models.recognition import RecognitionItem
from models.whisper.encode import encode_window
from models.whisper.recognizer import WhisperRecognizer
from tests.models.compare import assert_same_recognitions, same_recognition
from tests.models.whisper import converted_demo_model, load_clip, reference
from tests.models.whisper.test_recognizer import BASE_WER_BOUND, TINY_EN_WER_BOUND, corpus_wer, human_english

pytestmark = pytest.mark.skipif(kernels_missing() is not None, reason=f"no FBGEMM kernels: {kernels_missing()}")

CLIPS = ("human/sense_and_sensibility_01_austen_64kb-0870.wav", "human/goforward.wav", "human/001.wav",
         "human/sense_and_sensibility_01_austen_64kb-0880.wav", "tts-multilingual/en/quick_brown_fox.wav")


def _packed(name: str, kind: str, tmp_path_factory) -> WhisperRecognizer:
    recognizer = WhisperRecognizer.from_pretrained(converted_demo_model(name, tmp_path_factory), packed=kind)
    assert recognizer.packing.startswith(f"{kind}: ") and any(
        isinstance(m, PackedLinear) for m in recognizer.model.modules())
    return recognizer


def _items() -> list[RecognitionItem]:
    return [RecognitionItem(load_clip(path), context="robot commands" if i == 1 else "") for i, path in enumerate(CLIPS)]


def _joined(recognizer: WhisperRecognizer, items: list[RecognitionItem], schedule: dict[int, list[int]]) -> list:
    session = recognizer.open_session(len(items))
    results, step = {}, 0
    while step <= max(schedule) or session.running:
        joining = schedule.get(step, [])
        for update in session.join([(i, items[i]) for i in joining]) + session.step():
            if update.result is not None:
                results[update.key] = update.result
        step += 1
    return [results[i] for i in range(len(items))]


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory) -> WhisperRecognizer:
    return _packed("tiny_en", "int8", tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_fp16(tmp_path_factory) -> WhisperRecognizer:
    return _packed("tiny_en", "fp16", tmp_path_factory)


def test_tiny_int8_rows_joining_at_different_steps_equal_each_row_alone(tiny_int8):
    items = _items()
    alone = [tiny_int8.recognize([item])[0] for item in items]
    assert_same_recognitions(_joined(tiny_int8, items, {0: [0], 2: [1, 2], 6: [3], 7: [4]}), alone)
    assert_same_recognitions(tiny_int8.recognize(items), alone)


def test_tiny_int8_rows_prepared_on_two_threads_while_rows_step_equal_each_row_alone(tiny_int8):
    """app/engine/prefill_ahead.py: encoders run on a helper thread while the session steps, and on the
    stepping thread too (one model, two threads at once); rows that join with those states decode as alone."""
    items = _items()
    alone = [tiny_int8.recognize([item])[0] for item in items]
    session, results = tiny_int8.open_session(len(items)), {}

    def collect(updates) -> None:
        results.update((update.key, update.result) for update in updates if update.result is not None)

    collect(session.join([(0, items[0])]))
    with concurrent.futures.ThreadPoolExecutor(1) as helper:
        on_helper = helper.submit(session.prepare, items[1:3])
        here = session.prepare(items[3:])  # the same encoder at the same time as the helper's
        while session.running and not on_helper.done():
            collect(session.step())
        prepared = on_helper.result() + here
    collect(session.join([(i, items[i]) for i in range(1, len(items))], prepared))
    while session.running:
        collect(session.step())
    assert_same_recognitions([results[i] for i in range(len(items))], alone)


@pytest.mark.parametrize("kind", ["int8", "fp16"])
def test_tiny_steps_written_out_give_the_transformers_forward_passs_scores_bit_for_bit(kind, request):
    """models.whisper.written_out (prompts and steps) against the decoder's own forward pass, rows joining at
    different steps."""
    recognizer = request.getfixturevalue(f"tiny_{kind}")
    items, schedule = _items(), {0: [0, 1], 3: [2], 5: [3, 4]}
    scores = {}
    for written_out in (True, False):
        session = recognizer.open_session(len(items))
        assert session.written_out  # int8 attends row by row: the written-out step is the default
        session.written_out, recorded, decode = written_out, [], session.decode
        session.decode = lambda *args, decode=decode, recorded=recorded: recorded.append(decode(*args)) or recorded[-1]
        step = 0
        while step <= max(schedule) or session.running:
            session.join([(i, items[i]) for i in schedule.get(step, [])])
            session.step()
            step += 1
        scores[written_out] = recorded
    assert len(scores[True]) == len(scores[False]) > 10
    assert all(torch.equal(mine, theirs) for mine, theirs in zip(scores[True], scores[False]))


@pytest.mark.parametrize("kind", ["int8", "fp16"])
def test_tiny_prompts_written_out_fill_the_slots_and_score_as_the_transformers_forward_pass(kind, request):
    """models.whisper.written_out: each row's cross-attention keys and values, its prompt's keys and values
    and its first scores (one pass where the prompt is known; the SOT pass first for the row with context)
    equal transformers' bit for bit: with int8 (projections fused, the encoder states scaled once for every
    layer) and fp16 weights (a product per projection)."""
    recognizer = request.getfixturevalue(f"tiny_{kind}")
    items, outcome = _items(), {}
    for written_out in (True, False):
        session = recognizer.open_session(len(items))
        assert session.written_out
        session.written_out = written_out
        with torch.inference_mode():
            scores = session.prefill([session.new_row(index, item) for index, item in enumerate(items)])
        stores = [store for cache in (session.kv.cache, session.kv.cross_cache) for layer in cache.layers
                  for store in (layer.key_store, layer.value_store)]
        outcome[written_out] = scores, stores
    (mine, my_stores), (theirs, their_stores) = outcome[True], outcome[False]
    assert mine.shape[0] == len(items) and torch.equal(mine, theirs)
    assert len(my_stores) == 4 * len(recognizer.model.model.decoder.layers)
    assert all(torch.equal(a, b) for a, b in zip(my_stores, their_stores))
    assert any(bool(store.abs().sum() > 0) for store in my_stores[:2])  # written: not two blank caches


def test_written_out_passes_call_a_hooked_layer_through_its_module(tiny_int8):
    """A packed layer or layer norm that carries a hook when a session opens is called as a module, so its
    hooks run; a session opened before the hooks calls the kernels directly (what it is for)."""
    layer = tiny_int8.model.model.decoder.layers[0]
    direct, calls = tiny_int8.open_session(1), []
    handles = [module.register_forward_hook(lambda *args, name=name: calls.append(name))
               for name, module in (("fc1", layer.fc1), ("norm", layer.final_layer_norm),
                                    ("cross k|v", layer.encoder_attn.k_proj.shared.packed))]
    try:
        decode_all(direct, [_items()[0]])
        assert calls == []
        decode_all(tiny_int8.open_session(1), [_items()[0]])
    finally:
        for handle in handles:
            handle.remove()
    assert {"fc1", "norm", "cross k|v"} <= set(calls)


def test_tiny_int8_windows_written_out_give_the_transformers_encoders_states_bit_for_bit(tiny_int8):
    """models.whisper.encode: the packed path encodes each window with the written-out calls (the encoder
    module's forward is not called), and its states equal the transformers forward pass's exactly."""
    encoder = tiny_int8.model.model.encoder
    features = tiny_int8.features(_items()[:3])  # [3, n_mels, 3000]
    calls = []
    handle = encoder.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        states = tiny_int8.encode(features)
    finally:
        handle.remove()
    assert calls == [] and states.shape[0] == 3
    with torch.inference_mode():
        for index in range(3):
            assert torch.equal(states[index:index + 1], encoder(features[index:index + 1]).last_hidden_state)
        with pytest.raises(ValueError, match="one window"):
            encode_window(encoder, features[:2])


def _with_passes(recognizer: WhisperRecognizer, items: list[RecognitionItem], fold: bool) -> tuple[list, int]:
    """The items decoded together, with the first-step pass folded into the prompt pass where the prompt is
    known (the default) or never; and how many decoder passes the prefill made."""
    session, passes = recognizer.open_session(len(items)), []
    decoder = session._decoder
    session._decoder = lambda *args: passes.append(1) or decoder(*args)
    if not fold:
        session._known_languages = lambda rows: None
    return decode_all(session, items), len(passes)


def test_one_prompt_pass_where_the_prompt_is_known_gives_the_two_passes_numbers_exactly(tiny_int8):
    """models/whisper/session.py: with no context (English-only model) the prompt is known before the first
    pass, and P(no speech) is read at the SOT position of the prompt pass: every field, its floats included,
    is the same as with the separate SOT pass. A row with context still gets two passes."""
    items = _items()  # item 1 has context
    folded, folded_passes = _with_passes(tiny_int8, items, fold=True)
    separate, separate_passes = _with_passes(tiny_int8, items, fold=False)
    assert (folded_passes, separate_passes) == (len(items) + 1, 2 * len(items))  # one row at a time on a CPU
    assert folded == separate  # dataclass equality: no_speech_prob and avg_logprob bit for bit


def _human_english_wer(recognizer: WhisperRecognizer) -> float:
    paths = human_english()
    results = recognizer.recognize([RecognitionItem(load_clip(p)) for p in paths])
    return corpus_wer([reference(p) for p in paths], [r.text for r in results])


def test_tiny_int8_stays_within_the_fp32_wer_bound(tiny_int8):
    assert _human_english_wer(tiny_int8) <= TINY_EN_WER_BOUND


@pytest.mark.slow
def test_base_int8_is_batch_invariant_with_per_item_languages_and_within_the_wer_bound(tmp_path_factory):
    base = _packed("base", "int8", tmp_path_factory)
    items = _items() + [RecognitionItem(load_clip("tts-multilingual/zh/nihao_shijie.wav"), language="zh"),
                        RecognitionItem(load_clip("tts-multilingual/zh/nihao_shijie.wav"))]
    alone = [base.recognize([item])[0] for item in items]
    assert_same_recognitions(_joined(base, items, {0: [0, 5], 1: [1], 4: [2, 6], 9: [3, 4]}), alone)
    english = [RecognitionItem(load_clip(path), language="en") for path in CLIPS]  # multilingual: prompt known
    assert _with_passes(base, english, fold=True) == (_with_passes(base, english, fold=False)[0], len(english))
    assert _human_english_wer(base) <= BASE_WER_BOUND


@pytest.mark.slow
def test_fbgemms_per_tensor_int8_changes_rows_with_their_neighbours(tmp_path_factory):
    """Why per-row scales: with one activation scale per batch, some row decodes differently batched."""
    base = _packed("base", "int8-tensor", tmp_path_factory)
    items = [RecognitionItem(load_clip(p)) for p in human_english()]
    batched = base.recognize(items)
    alone = [base.recognize([item])[0] for item in items]
    assert not all(same_recognition(a, b) for a, b in zip(batched, alone))
