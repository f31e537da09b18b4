from __future__ import annotations

import pytest

from app.main import create_app
from app.pipeline import Pipeline
from app.settings import Settings
from tests.fakes import FakeRecognizer, FakeRouter
from tests.server import running


def fake_settings(**overrides) -> Settings:
    values = {"profile": "tests", "max_batch_wait_ms": 5.0, "warmup": True, "drain_seconds": 5.0}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def fake_service():
    """Start a real server on a fake pipeline; call with settings overrides; yields (base_url, recognizer)."""
    stack = []

    def start(recognizer: FakeRecognizer | None = None, **overrides):
        recognizer = recognizer or FakeRecognizer(languages_robust=frozenset({"en", "zh"}))
        app = create_app(fake_settings(**overrides), pipeline=Pipeline(recognizer, FakeRouter(),
                                                                          description="fake"))
        context = running(app)
        base = context.__enter__()
        stack.append(context)
        return base, recognizer

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)
