"""Shared fixtures of the model tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tiny matrices gain nothing from threads, and on shared cores OpenMP spin-waiting makes them ~50x slower.
    The real Whisper models are not tiny: they keep the default."""
    if "whisper" in request.module.__name__:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
