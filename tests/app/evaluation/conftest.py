"""A labelled manifest of synthetic clips whose right routing is known.

The fakes make the answer computable: FakeRouter scores a clip by its peak level and FakeRecognizer
writes '<route> <seconds>s'. Quiet clips are labelled with the base path's text and loud clips with the
robust path's, so routing at any threshold between the two levels makes no errors at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from app.audio.speech_gate import SpeechGateConfig
from app.engine.guards import GuardConfig
from app.engine.pipeline import Pipeline
from app.evaluation.runners import InProcessConfig
from tests.fakes import FakeRecognizer, FakeRouter, tone
from tests.server import wav_bytes

QUIET, LOUD = 0.2, 0.8


@dataclass(frozen=True)
class Clip:
    name: str
    audio: np.ndarray
    reference: str
    language: str = "en"


def labelled_clips() -> list[Clip]:
    return [Clip("quiet1.wav", tone(1.0, QUIET), "base 1.0s"), Clip("loud1.wav", tone(1.0, LOUD), "robust 1.0s"),
            Clip("quiet2.wav", tone(2.0, QUIET, 330.0), "base 2.0s"),
            Clip("loud2.wav", tone(2.0, LOUD, 550.0), "robust 2.0s")]


def write_manifest(directory: Path, clips: list[Clip]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["path\treference\tlanguage"]
    for clip in clips:
        (directory / clip.name).write_bytes(wav_bytes(clip.audio))
        lines.append(f"{clip.name}\t{clip.reference}\t{clip.language}")
    manifest = directory / "manifest.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


@pytest.fixture
def labelled_manifest(tmp_path: Path) -> Path:
    return write_manifest(tmp_path / "clips", labelled_clips())


def fake_pipeline(recognizer: FakeRecognizer | None = None, router: FakeRouter | None = None) -> Pipeline:
    recognizer = recognizer or FakeRecognizer(languages_robust=frozenset({"en", "zh"}))
    # The fake's texts are labels ("robust 1.0s"), not transcripts: a Latin label for a Chinese clip is
    # what the script guard blanks (tests/app/engine/test_guards.py), so the guards stay off here.
    return Pipeline(recognizer, router or FakeRouter(), description="fake", guards=GuardConfig(enabled=False))


def tone_config(**overrides) -> InProcessConfig:
    """In-process runner settings for the fakes' tones, which stand in for speech: the speech gate (tested
    on real audio in tests/app/audio/test_speech_gate.py) would find none in them."""
    return InProcessConfig(**{"progress": False, "speech_gate": SpeechGateConfig(enabled=False), **overrides})
