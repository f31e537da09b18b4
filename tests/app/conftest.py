from __future__ import annotations

import pytest

from app.engine.guards import GuardConfig
from app.engine.pipeline import Pipeline
from app.main import create_app
from app.settings import Settings
from tests.fakes import FakeRecognizer, FakeRouter
from tests.server import running


def fake_settings(**overrides) -> Settings:
    # The fakes' clips are tones standing in for speech: the speech gate (tested on real audio in
    # test_speech_gate.py) would rightly find no speech in them.
    values = {"profile": "tests", "max_batch_wait_ms": 5.0, "warmup": True, "drain_seconds": 5.0,
              "speech_gate": False}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def fake_service():
    """Start a real server on a fake pipeline; call with settings overrides; yields (base_url, recognizer)."""
    stack = []

    def start(recognizer: FakeRecognizer | None = None, **overrides):
        recognizer = recognizer or FakeRecognizer(languages_robust=frozenset({"en", "zh"}))
        # The fake's texts are labels ("base 1.0s"), not transcripts: the guards (tested in test_guards.py)
        # would rightly blank a Latin label for Chinese audio, so they stay off here.
        pipeline = Pipeline(recognizer, FakeRouter(), description="fake", guards=GuardConfig(enabled=False))
        app = create_app(fake_settings(**overrides), pipeline=pipeline)
        context = running(app)
        base = context.__enter__()
        stack.append(context)
        return base, recognizer

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)
