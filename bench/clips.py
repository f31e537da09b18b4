"""The benchmark's audio: real recordings from the shared fixtures, as short (1–5 s), medium (10–20 s)
and long (60 s+) clips, or as a 1–30 s length mix. Longer clips are real recordings joined with short
pauses."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from app.audio.decoding import decode_audio

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audio"
RATE = 16_000


@dataclass(frozen=True)
class Clip:
    name: str
    kind: str  # short | medium | long
    samples: np.ndarray  # float32 16 kHz mono
    reference: str

    @property
    def seconds(self) -> float:
        return len(self.samples) / RATE

    def wav(self) -> bytes:
        buffer = io.BytesIO()
        sf.write(buffer, self.samples, RATE, format="WAV", subtype="PCM_16")
        return buffer.getvalue()


def english_recordings(root: Path = FIXTURES) -> list[Clip]:
    clips = []
    for line in (root / "MANIFEST.tsv").read_text().splitlines()[1:]:
        path, language, reference = line.split("\t")
        if language != "en" or not path.startswith("human/"):
            continue
        audio = decode_audio((root / path).read_bytes(), max_seconds=600).samples
        clips.append(Clip(Path(path).stem, "short", audio, reference))
    return clips


def _join(parts: list[Clip], name: str, kind: str) -> Clip:
    pause = np.zeros(int(0.4 * RATE), np.float32)
    samples = np.concatenate([x for clip in parts for x in (clip.samples, pause)])
    return Clip(name, kind, samples, " ".join(c.reference for c in parts))


def _until(pool: list[Clip], rng: random.Random, seconds: float) -> list[Clip]:
    chosen: list[Clip] = []
    while sum(c.seconds + 0.4 for c in chosen) < seconds:
        chosen.append(rng.choice(pool))
    return chosen


def benchmark_mix(seed: int = 0, shorts: int = 6, mediums: int = 3, longs: int = 1) -> list[Clip]:
    """The clip mix, deterministic under `seed`."""
    rng = random.Random(seed)
    recordings = english_recordings()
    short_pool = [c for c in recordings if 1.0 <= c.seconds <= 5.0]
    mix = [rng.choice(short_pool) for _ in range(shorts)]
    mix += [_join(_until(recordings, rng, 12.0), f"medium{i}", "medium") for i in range(mediums)]
    mix += [_join(_until(recordings, rng, 62.0), f"long{i}", "long") for i in range(longs)]
    return mix


def length_mix(count: int = 16, shortest: float = 1.0, longest: float = 30.0, seed: int = 0) -> list[Clip]:
    """`count` clips with durations spread log-uniformly over [shortest, longest] (more short clips than
    long ones, as in real traffic), each made of real recordings joined with pauses and cut to length."""
    if count < 2 or not 0 < shortest < longest:
        raise ValueError("length_mix needs count >= 2 and 0 < shortest < longest")
    rng = random.Random(seed)
    recordings = english_recordings()
    ratio = longest / shortest
    mix = []
    for index in range(count):
        seconds = shortest * ratio ** (index / (count - 1))
        joined = _join(_until(recordings, rng, seconds), f"len{index:02d}-{seconds:.1f}s", "mix")
        mix.append(Clip(joined.name, _kind(seconds), joined.samples[: int(seconds * RATE)], joined.reference))
    rng.shuffle(mix)  # arrival order is not sorted by length
    return mix


def _kind(seconds: float) -> str:
    return "short" if seconds <= 5 else "medium" if seconds <= 20 else "long"


def recording_of(seconds: float, name: str, seed: int = 1) -> Clip:
    """Real recordings joined with pauses, cut to `seconds` (a long file, or one full segment)."""
    joined = _join(_until(english_recordings(), random.Random(seed), seconds), name, _kind(seconds))
    return Clip(name, joined.kind, joined.samples[: int(seconds * RATE)], joined.reference)


def short_clip(name: str = "goforward") -> Clip:
    return next(clip for clip in english_recordings() if clip.name == name)
