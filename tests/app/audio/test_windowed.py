"""The windowed path both synchronous requests and jobs take: streaming decode, windowed cuts, fixed gate
groups. Whatever the block sizes, and from any resume point at a group boundary, the segments and their
gate outcomes are exactly those of one pass over the whole recording."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from app.audio.decoding import decode_audio
from app.audio.segmenter import SegmenterConfig, iter_segments, split_for_recognition
from app.audio.speech_gate import SpeechGateConfig
from app.audio.stream import AudioStream, probe_seconds
from app.audio.windowed import GATE_GROUP, gated_segments, skip_samples
from app.jobs.chunks import ChunkFile
from tests.app.audio.test_segmenter import FIXTURES, RATE, speechlike

NAMES = ["goforward.wav", "sense_and_sensibility_01_austen_64kb-0870.wav", "005.wav",
         "sense_and_sensibility_01_austen_64kb-0890.wav", "001.wav"]


def recording(repeats: int = 4) -> np.ndarray:
    clips = [decode_audio((FIXTURES / "human" / name).read_bytes(), max_seconds=60).samples for name in NAMES]
    parts = []
    for index in range(repeats):
        for clip in clips:
            parts += [clip, np.zeros(int((0.3 + 0.1 * index) * RATE), np.float32)]
    return np.concatenate(parts)


def pieces(samples: np.ndarray, seed: int) -> list[np.ndarray]:
    cuts = np.sort(np.random.default_rng(seed).integers(0, len(samples), 40))
    return np.split(samples, cuts)


def test_cuts_do_not_depend_on_how_the_audio_arrives():
    audio = np.concatenate([speechlike(50, 1), np.zeros(8000, np.float32), speechlike(45, 2)])
    config = SegmenterConfig(max_segment_seconds=20.0)
    whole = [(s.start, s.end) for s in iter_segments([audio], config)]
    for seed in range(3):
        assert [(s.start, s.end) for s in iter_segments(pieces(audio, seed), config)] == whole
    assert whole[0][0] == 0 and whole[-1][1] == pytest.approx(len(audio) / RATE)


def encoded(samples: np.ndarray, rate: int, channels: int, fmt: str) -> bytes:
    import soxr

    resampled = soxr.resample(samples, RATE, rate) if rate != RATE else samples
    data = np.stack([resampled] * channels, axis=1) if channels > 1 else resampled
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(("rate", "channels", "fmt"), [(16_000, 1, "WAV"), (44_100, 2, "FLAC"), (22_050, 1, "OGG")])
def test_decoding_from_stored_chunks_gives_the_synchronous_samples(rate, channels, fmt):
    data = encoded(recording(1)[: 20 * RATE], rate, channels, fmt)
    whole = decode_audio(data, max_seconds=600).samples
    chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
    fetched: list[int] = []
    file = ChunkFile(len(data), 4096, lambda seq: fetched.append(seq) or chunks[seq], cached=2)
    blocks = list(AudioStream(file, max_seconds=600).blocks())
    assert np.array_equal(np.concatenate(blocks), whole)
    assert len(blocks) > 1 and file.failure is None and len(fetched) >= len(chunks)
    assert probe_seconds(io.BytesIO(data)) == pytest.approx(20.0, abs=0.05)


def test_a_resumed_run_from_a_group_boundary_equals_the_tail_of_a_full_run():
    audio = recording()
    gate = SpeechGateConfig()
    full = [item for group in gated_segments([audio], max_segment_seconds=5.0, gate_config=gate) for item in group]
    assert len(full) > 2 * GATE_GROUP and {i.outcome for i in full} >= {"speech"}
    first = 2 * GATE_GROUP
    start = full[first].start_sample
    resumed = [item for group in gated_segments(skip_samples(pieces(audio, 5), start), max_segment_seconds=5.0,
                                                gate_config=gate, start_sample=start, first_index=first)
               for item in group]
    assert [(i.index, i.start_sample, i.end_sample, i.outcome) for i in resumed] == \
        [(i.index, i.start_sample, i.end_sample, i.outcome) for i in full[first:]]
    with pytest.raises(ValueError):
        next(gated_segments([audio], max_segment_seconds=5.0, gate_config=gate, first_index=3))


def test_the_synchronous_split_is_the_windowed_split():
    audio = recording(2)
    assert [(s.start, s.end) for s in split_for_recognition(audio, max_segment_seconds=10.0)] == \
        [(s.start, s.end) for s in iter_segments(pieces(audio, 9), SegmenterConfig(max_segment_seconds=10.0))]
