"""The demo profile for real: uvicorn on loopback with Whisper tiny.en / base and the shipped router,
driven by curl, httpx and the official openai client; real transcripts of real recordings."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.audio.decoding import decode_audio
from app.evaluation.scoring import corpus_rate, count_errors
from app.main import create_app
from app.settings import Settings
from bench.no_invented_text import speech_cases
from tests.server import running, wav_bytes

pytestmark = pytest.mark.slow
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audio"


def manifest(language: str = "en", prefix: str = "human/") -> list[tuple[Path, str]]:
    rows = [line.split("\t") for line in (FIXTURES / "MANIFEST.tsv").read_text().splitlines()[1:]]
    return [(FIXTURES / path, ref) for path, lang, ref in rows if lang == language and path.startswith(prefix)]


def wer(refs: list[str], hyps: list[str]) -> float:
    return corpus_rate(count_errors(r, h, "en") for r, h in zip(refs, hyps, strict=True))


@pytest.fixture(scope="module")
def demo():
    with running(create_app(Settings(profile="demo", max_batch_items=4)), timeout=600) as base:
        yield base


def test_curl_json_and_srt(demo):
    if shutil.which("curl") is None:
        pytest.skip("curl not installed (.ci/run installs it)")
    clip = FIXTURES / "human" / "goforward.wav"
    out = subprocess.run(["curl", "-sf", f"{demo}/v1/audio/transcriptions", "-F", f"file=@{clip}"],
                         capture_output=True, text=True, check=True).stdout
    body = json.loads(out)
    assert "forward" in body["text"].lower() and body["route"] in ("base", "robust")
    assert 0.0 <= body["router_score"] <= 1.0
    srt = subprocess.run(["curl", "-sf", f"{demo}/v1/audio/transcriptions", "-F", f"file=@{clip}",
                          "-F", "response_format=srt"], capture_output=True, text=True, check=True).stdout
    assert srt.startswith("1\n00:00:00,000 --> ") and "forward" in srt.lower()


def test_openai_client_every_format(demo):
    from openai import OpenAI

    client = OpenAI(base_url=f"{demo}/v1", api_key="unused")
    clip = FIXTURES / "human" / "sense_and_sensibility_01_austen_64kb-0880.wav"
    with clip.open("rb") as f:
        plain = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert plain.text and plain.route in ("base", "robust")
    for fmt, check in (("text", lambda r: isinstance(r, str) and r.strip()),
                       ("srt", lambda r: r.startswith("1\n00:00:00,000 --> ")),
                       ("vtt", lambda r: r.startswith("WEBVTT")),
                       ("verbose_json", lambda r: r.segments and r.segments[0].start == 0.0 and r.duration > 1)):
        with clip.open("rb") as f:
            answer = client.audio.transcriptions.create(model="whisper-1", file=f, response_format=fmt)
        assert check(answer), (fmt, answer)


def test_real_recordings_within_wer_bound(demo):
    refs, hyps = [], []
    with httpx.Client(base_url=demo, timeout=300) as client:
        for path, ref in manifest():
            answer = client.post("/v1/audio/transcriptions", files={"file": (path.name, path.read_bytes())},
                                 data={"language": "en"})
            assert answer.status_code == 200, answer.text
            refs.append(ref)
            hyps.append(answer.json()["text"])
    assert wer(refs, hyps) <= 0.15


def test_long_file_cut_at_pauses_loses_and_doubles_nothing(demo):
    clips = manifest()
    parts, refs = [], []
    for path, ref in clips * 2:
        parts += [decode_audio(path.read_bytes(), max_seconds=60).samples, np.zeros(8000, np.float32)]
        refs.append(ref)
    audio = np.concatenate(parts)
    assert len(audio) > 70 * 16000
    answer = httpx.post(f"{demo}/v1/audio/transcriptions", files={"file": ("long.wav", wav_bytes(audio))},
                        data={"response_format": "verbose_json", "language": "en"}, timeout=600)
    body = answer.json()
    assert answer.status_code == 200 and body["duration"] == pytest.approx(len(audio) / 16000, abs=0.01)
    assert wer([" ".join(refs)], [body["text"]]) <= 0.15
    starts = [s["start"] for s in body["segments"]]
    assert starts == sorted(starts) and body["segments"][-1]["end"] <= body["duration"] + 0.01


NONSPEECH = sorted((FIXTURES / "nonspeech").glob("*.flac"))
# Corpus WER per kind on the 9 short human recordings (pocketsphinx and ALSA clips), measured on the service
# before the speech gate and the guards existed (main at b203d0d, `python -m bench.no_invented_text`, same seeded
# audio), plus one word (30 reference words per kind, 8 for short): they must not get worse.
SURVIVAL_WER_BOUNDS = {"quiet": 0.234, "noise_0db": 0.434, "noise_10db": 0.267, "reverb": 0.20, "telephone": 0.20,
                       "short": 0.625}
# With int8 (what `auto` serves on CPUs without native bf16) these 9 clips at 0 dB SNR measured 0.5 (AVX2-limited)
# and 0.6 (AVX512) against fp32's 0.4, while noise_10db improved (0.17-0.2 against 0.233); on the 126 recordings
# and degraded copies int8's corpus WER is lower than fp32's on every path (bench/results/int8_quality.json).
INT8_SURVIVAL_WER_BOUNDS = {**SURVIVAL_WER_BOUNDS, "noise_0db": 0.6}


def test_non_speech_recordings_get_no_words(demo):
    with httpx.Client(base_url=demo, timeout=300) as client:
        for path in NONSPEECH:  # as a new user sends them: no language, automatic route
            body = client.post("/v1/audio/transcriptions", files={"file": (path.name, path.read_bytes())}).json()
            assert body["text"] == "" and body["no_speech"] is True and body["route"] == "none", (path.name, body)
        forced = client.post("/v1/audio/transcriptions", data={"route": "base", "response_format": "verbose_json"},
                             files={"file": ("m.flac", (FIXTURES / "nonspeech" / "music_robot_dity.flac").read_bytes())})
        assert forced.json()["text"] == "" and all(s["no_speech"] for s in forced.json()["segments"])


def test_quiet_noisy_reverberant_telephone_and_short_speech_still_transcribe(demo):
    cases = [(kind, ref, samples) for name, kind, _, ref, samples in speech_cases()
             if kind in SURVIVAL_WER_BOUNDS and name.startswith(("0", "goforward", "alsa_"))]

    def ask(case):
        kind, ref, samples = case
        answer = httpx.post(f"{demo}/v1/audio/transcriptions", files={"file": ("c.wav", wav_bytes(samples))},
                            data={"language": "en"}, timeout=300)
        assert answer.status_code == 200, answer.text
        return kind, ref, answer.json()["text"]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # concurrent requests share batches
        answers = list(pool.map(ask, cases))
    assert len(answers) == 5 * 9 + 3
    dtype = httpx.get(f"{demo}/v1/models").json()["data"][0]["dtype"]
    for kind, bound in (INT8_SURVIVAL_WER_BOUNDS if dtype == "int8" else SURVIVAL_WER_BOUNDS).items():
        refs, hyps = [r for k, r, _ in answers if k == kind], [h for k, _, h in answers if k == kind]
        assert wer(refs, hyps) <= bound, (kind, wer(refs, hyps), list(zip(refs, hyps)))
