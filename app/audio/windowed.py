"""The windowed path from decoded blocks to gated segments, shared by synchronous requests and jobs.

blocks (app/audio/stream.py) -> segments cut at pauses (app/audio/segmenter.py) -> the speech gate, run on
fixed groups of GATE_GROUP consecutive segments counted from the start of the file. The groups are fixed so
that both paths, and a job resumed after a crash, gate every segment in the same company: silero runs a
group as one batch, and a batch's numbers may depend on its size, so equal groups give equal outcomes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from app.audio.segmenter import RATE, Segment, SegmenterConfig, iter_segments
from app.audio.speech_gate import GateOutcome, SpeechGateConfig, gate

GATE_GROUP = 8  # segments gated together (one silero batch); a resumed job restarts at a group boundary


@dataclass(frozen=True)
class GatedSegment:
    index: int  # position in the file's segments, from 0
    segment: Segment
    outcome: GateOutcome

    @property
    def start_sample(self) -> int:
        return round(self.segment.start * RATE)

    @property
    def end_sample(self) -> int:
        return self.start_sample + len(self.segment.samples)


def gated_segments(blocks: Iterable[np.ndarray], *, max_segment_seconds: float, gate_config: SpeechGateConfig,
                   start_sample: int = 0, first_index: int = 0) -> Iterator[list[GatedSegment]]:
    """Groups of gated segments, in order. `blocks` start at `start_sample` of the file, which must be the
    start of segment `first_index`, a multiple of GATE_GROUP (where a resumed job picks up)."""
    if first_index % GATE_GROUP:
        raise ValueError(f"first_index {first_index} is not at a gate group boundary ({GATE_GROUP})")
    config = SegmenterConfig(max_segment_seconds=max_segment_seconds)
    group: list[Segment] = []
    index = first_index
    for segment in iter_segments(blocks, config, start_sample):
        group.append(segment)
        if len(group) == GATE_GROUP:
            yield _gate_group(group, index, gate_config)
            index += len(group)
            group = []
    if group:
        yield _gate_group(group, index, gate_config)


def _gate_group(group: list[Segment], first: int, config: SpeechGateConfig) -> list[GatedSegment]:
    outcomes = gate([segment.samples for segment in group], config)
    return [GatedSegment(first + i, segment, outcome) for i, (segment, outcome) in enumerate(zip(group, outcomes))]


def skip_samples(blocks: Iterable[np.ndarray], count: int) -> Iterator[np.ndarray]:
    """`blocks` without their first `count` samples (a resumed job decodes from the start, so the resampler
    sees the same history, and drops what its stored segments already cover)."""
    for block in blocks:
        if count >= len(block):
            count -= len(block)
            continue
        yield block[count:] if count else block
        count = 0
