"""A pending segment streams each character once, also across a restart, and is answered once."""

import asyncio

import numpy as np
import pytest

from app.engine.pending import Pending
from app.engine.pipeline import SegmentJob


def pending_with(sent: list[str], loop: asyncio.AbstractEventLoop) -> Pending:
    return Pending(0, SegmentJob(np.zeros(1600, dtype=np.float32)), loop.create_future(), "req", 0.0, listener=sent.append)


def test_a_restarted_row_streams_only_what_was_not_sent():
    loop = asyncio.new_event_loop()
    try:
        sent: list[str] = []
        pending = pending_with(sent, loop)
        pending.stream("Hello")
        pending.stream(" wor")
        pending.restart()  # decoded again from the start
        for delta in ("Hel", "lo", " world", "!"):
            pending.stream(delta)
        pending.stream("")
        assert sent == ["Hello", " wor", "ld", "!"]
        assert "".join(sent) == "Hello world!"
        assert pending.routed is None and pending.tokens == 0
    finally:
        loop.close()


def test_a_pending_segment_is_answered_once():
    loop = asyncio.new_event_loop()
    try:
        pending = pending_with([], loop)
        pending.answer("first")
        pending.fail(RuntimeError("late"))
        pending.answer("second")
        assert pending.future.result() == "first"
        failed = pending_with([], loop)
        failed.fail(RuntimeError("boom"))
        failed.answer("late")
        with pytest.raises(RuntimeError, match="boom"):
            failed.future.result()
    finally:
        loop.close()
