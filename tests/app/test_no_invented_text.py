"""The speech gate and the guards inside the real service (uvicorn on loopback, scripted models): what a
client gets, what the models are spared, what the metrics count."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from app.audio.decoding import decode_audio
from app.engine.guards import GuardConfig
from app.engine.pipeline import Pipeline
from app.main import create_app
from models.recognition import Recognition
from tests.app.conftest import fake_settings
from tests.fakes import FakeRecognizer, FakeRouter, ScriptedRecognizer, tone
from tests.server import metric, running, wav_bytes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audio"


def load(relative: str) -> np.ndarray:
    return decode_audio((FIXTURES / relative).read_bytes(), max_seconds=600).samples


@pytest.fixture
def service():
    """Start the service on a pipeline of fakes with the real speech gate and guards."""
    contexts = []

    def start(recognizer, **overrides):
        pipeline = Pipeline(recognizer, router := FakeRouter(), guards=GuardConfig())
        context = running(create_app(fake_settings(**{"speech_gate": True, **overrides}), pipeline=pipeline))
        contexts.append(context)
        return context.__enter__(), router

    yield start
    for context in reversed(contexts):
        context.__exit__(None, None, None)


def post(base: str, audio: bytes, **fields) -> httpx.Response:
    return httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("clip", audio)}, data=fields, timeout=60)


def test_non_speech_never_reaches_the_router_or_the_recognizer(service):
    recognizer = FakeRecognizer(languages_robust=None)
    base, router = service(recognizer)
    batches, scored = len(recognizer.batches), len(router.calls)  # after the warm-up
    for name in ("machine sounds", "music"):
        clip = "nonspeech/jackhammer.flac" if name == "machine sounds" else "nonspeech/music_cold_day.flac"
        body = post(base, (FIXTURES / clip).read_bytes(), response_format="verbose_json").json()
        assert body["text"] == "" and body["no_speech"] is True and body["route"] == "none", name
        assert [s["no_speech"] for s in body["segments"]] == [True] and body["segments"][0]["route"] is None
    assert len(recognizer.batches) == batches and len(router.calls) == scored
    assert metric(base, "asr_speech_gate_segments_total", {"outcome": "no_speech"}) == 2
    assert metric(base, "asr_speech_gate_audio_seconds_total", {"outcome": "no_speech"}) == pytest.approx(12.56,
                                                                                                      abs=0.01)
    speech = post(base, (FIXTURES / "human" / "goforward.wav").read_bytes()).json()
    assert speech["text"] == "base 2.8s" and speech["no_speech"] is False
    assert metric(base, "asr_speech_gate_segments_total", {"outcome": "speech"}) == 1


def test_a_long_recording_gets_no_speech_windows_between_its_speech(service):
    recognizer = FakeRecognizer(languages_robust=None)
    base, _ = service(recognizer)
    machines = [load(f"nonspeech/{name}.flac") for name in ("chainsaw", "helicopter", "jackhammer", "wind")]
    noise = np.concatenate(machines * 7)[:60 * 16_000]  # 60 s of machine sounds and wind
    speech = load("human/sense_and_sensibility_01_austen_64kb-0870.wav")
    audio = np.concatenate([speech, np.zeros(4_000, np.float32), noise, np.zeros(4_000, np.float32), speech])
    body = post(base, wav_bytes(audio), response_format="verbose_json").json()
    segments = body["segments"]
    assert any(s["no_speech"] for s in segments) and not segments[0]["no_speech"] and not segments[-1]["no_speech"]
    assert all(s["text"] == "" and s["route"] is None for s in segments if s["no_speech"])
    assert len([s for s in segments if not s["no_speech"]]) == 2 and body["no_speech"] is False
    assert segments[0]["start"] == 0.0 and abs(segments[-1]["end"] - body["duration"]) < 0.01
    srt = post(base, wav_bytes(audio), response_format="srt").text
    assert srt.count(" --> ") == 2  # subtitles show only what was said


def test_guard_actions_reach_the_client_and_the_metrics(service):
    answers = {0: Recognition("", None, 0),  # the warm-up's quiet noise
               1: Recognition("고기, " * 40, "ko", 80, avg_logprob=-0.4),  # a loop, nothing else
               2: Recognition("Go forward ten meters.", "en", 6, avg_logprob=-1.3, no_speech_prob=0.1),
               3: Recognition("Thank you.", "en", 3, avg_logprob=-1.2, no_speech_prob=0.9)}
    base, _ = service(ScriptedRecognizer(answers), speech_gate=False)  # tones: the gate is not under test
    looped = post(base, wav_bytes(tone(1.0, 0.1))).json()
    assert looped["text"] == "" and looped["no_speech"] is True and looped["flags"] == []
    doubted = post(base, wav_bytes(tone(1.0, 0.2)), response_format="verbose_json").json()
    assert doubted["text"] == "Go forward ten meters." and doubted["flags"] == ["low_logprob"]
    assert doubted["segments"][0]["flags"] == ["low_logprob"] and doubted["no_speech"] is False
    assert post(base, wav_bytes(tone(1.0, 0.3))).json()["text"] == ""
    guarded = {(reason, action): metric(base, "asr_guarded_segments_total", {"reason": reason, "action": action})
               for reason, action in (("repetition", "blank"), ("low_logprob", "flag"), ("no_speech", "blank"))}
    assert guarded == {("repetition", "blank"): 1, ("low_logprob", "flag"): 1, ("no_speech", "blank"): 1}
    assert metric(base, "asr_guarded_segments_total", {"route": "base"}) == 3
