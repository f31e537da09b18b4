"""silero-vad (its model ships in the package), loaded once and shared by the segmenter and the speech gate.

The model keeps recurrent state between 32 ms frames, so one caller at a time uses it (one lock). Blocking:
the service calls these from its decode thread pool, never from the event loop.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence

import numpy as np

RATE = 16_000
FRAME = 512  # samples per silero step at 16 kHz (32 ms)
FRAME_SECONDS = FRAME / RATE

_LOCK = threading.Lock()
_MODEL = None


def _silero():  # called with _LOCK held
    """The silero_vad module. Its import calls torch.set_num_threads(1), which would leave the importing
    thread, and every thread started after it, computing on one CPU thread (app/engine/inference_thread.py):
    the count is put back."""
    import torch

    if "silero_vad" not in sys.modules:
        threads = torch.get_num_threads()
        import silero_vad  # noqa: F401

        torch.set_num_threads(threads)
    return sys.modules["silero_vad"]


def _model():  # called with _LOCK held
    global _MODEL
    if _MODEL is None:
        _MODEL = _silero().load_silero_vad()
    return _MODEL


def speech_timestamps(samples: np.ndarray) -> list[dict[str, int]]:
    """silero's own speech regions ({"start", "end"} in samples) over one waveform, default settings."""
    import torch

    with _LOCK:
        return _silero().get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(samples)), _model(),
                                               sampling_rate=RATE)


def speech_probabilities(blocks: Sequence[np.ndarray], enough: Callable[[np.ndarray], bool] | None = None,
                         check_every: int = 16) -> list[np.ndarray]:
    """P(speech) per 32 ms frame of each block ([len(block) // 512] each; a trailing part frame is not scored).

    The blocks run as one batch (rows are independent: each starts from a fresh state), so a request's
    segments cost about as much as its longest one. `enough`, when given, is asked every `check_every`
    frames about each row's track so far; once it holds for every row, scoring stops there and the tracks
    are that long. The model is recurrent, so the frames scored so far equal a full run's: a caller whose
    decision cannot change with more frames (at least so much speech) gets the same decision sooner.
    """
    import torch

    frames = [len(block) // FRAME for block in blocks]
    steps = max(frames, default=0)
    if steps == 0:
        return [np.zeros(0, np.float32) for _ in blocks]
    batch = np.zeros((len(blocks), steps * FRAME), np.float32)  # [B, steps * 512], zero-padded
    for row, (block, count) in enumerate(zip(blocks, frames)):
        batch[row, :count * FRAME] = block[:count * FRAME]
    audio = torch.from_numpy(batch)
    scores: list[torch.Tensor] = []  # [B, 1] per frame
    with _LOCK, torch.inference_mode():
        model = _model()
        model.reset_states()
        for step in range(steps):
            scores.append(model(audio[:, step * FRAME:(step + 1) * FRAME], RATE))
            if enough is not None and (step + 1) % check_every == 0 and _all_enough(scores, frames, enough):
                break
    probabilities = torch.cat(scores, dim=1).float().numpy()  # [B, steps scored]
    return [probabilities[row, :count] for row, count in enumerate(frames)]


def _all_enough(scores: list, frames: list[int], enough: Callable[[np.ndarray], bool]) -> bool:
    import torch

    so_far = torch.cat(scores, dim=1).float().numpy()  # [B, steps scored]
    return all(enough(so_far[row, :count]) for row, count in enumerate(frames))
