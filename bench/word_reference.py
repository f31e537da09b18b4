"""The reference set for word times: real human speech whose word (or phrase) boundaries are known.

Two parts (provenance: tests/fixtures/audio/words/PROVENANCE.md):
- labelled: two sentences whose every word was segmented by hand (praatio's examples, MIT), checked word
  by word;
- joined: the human fixture recordings (tests/fixtures/audio/human), each trimmed to its speech by its
  energy envelope, joined with seeded pauses of 0.25–0.8 s into files of at most ~25 s (one segment each),
  so every phrase's start and end is known to one 5 ms frame; checked at the phrase edges (the first word's
  start, the last word's end), where cross-attention times go wrong (ends early, pauses given to the next
  word).

`python -m bench.word_reference OUT_DIR` writes the joined files and a `reference.json` for inspection;
bench.word_times builds them in memory.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from app.audio.decoding import decode_audio

RATE = 16_000
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "audio"
FRAME = 80  # 5 ms
BELOW_PEAK_DB = 35.0
ABOVE_FLOOR_DB = 10.0
SUSTAIN = 4  # 20 ms
MAX_FILE_SECONDS = 25.0


@dataclass(frozen=True)
class Span:
    """A reference interval: one word (labelled) or one phrase (joined), in seconds."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class ReferenceFile:
    name: str
    samples: np.ndarray  # float32 16 kHz mono
    spans: tuple[Span, ...]
    kind: str  # "labelled" (word boundaries) | "joined" (phrase edges)


def speech_bounds(samples: np.ndarray) -> tuple[int, int]:
    """First and last sample of the speech by the energy envelope: 5 ms frames, 4 in a row (20 ms), louder
    than BELOW_PEAK_DB under the loudest frame and ABOVE_FLOOR_DB over the recording's noise floor (its
    5th-percentile frame), so a noisy recording's hiss is not taken for speech."""
    frames = len(samples) // FRAME
    rms = np.sqrt(np.mean(samples[: frames * FRAME].reshape(frames, FRAME) ** 2, axis=1) + 1e-12)
    level = 20 * np.log10(rms)
    threshold = max(level.max() - BELOW_PEAK_DB, float(np.percentile(level, 5)) + ABOVE_FLOOR_DB)
    # Sustained: SUSTAIN frames in a row above the threshold (a click is not the start of a word).
    above = np.convolve((level >= threshold).astype(int), np.ones(SUSTAIN, int), mode="valid") == SUSTAIN
    runs = np.flatnonzero(above)
    return int(runs[0]) * FRAME, int(runs[-1] + SUSTAIN) * FRAME


def labelled() -> list[ReferenceFile]:
    root = FIXTURES / "words"
    reference = json.loads((root / "words.json").read_text())
    return [ReferenceFile(Path(name).stem, decode_audio((root / name).read_bytes(), max_seconds=600).samples,
                          tuple(Span(w["word"], w["start"], w["end"]) for w in words), "labelled")
            for name, words in sorted(reference.items())]


def _human_phrases() -> list[tuple[str, np.ndarray]]:
    phrases = []
    for line in (FIXTURES / "MANIFEST.tsv").read_text().splitlines()[1:]:
        path, language, text = line.split("\t")
        if path.startswith("human/") and language == "en":
            audio = decode_audio((FIXTURES / path).read_bytes(), max_seconds=600).samples
            first, last = speech_bounds(audio)
            phrases.append((text, audio[first:last]))
    return phrases


def joined(seed: int = 0) -> list[ReferenceFile]:
    """Every human phrase once, in seeded order, joined with seeded pauses into files of <= 25 s; a -70 dBFS
    noise floor keeps the pauses from being digital silence."""
    rng = random.Random(seed)
    phrases = _human_phrases()
    rng.shuffle(phrases)
    files: list[ReferenceFile] = []
    parts: list[np.ndarray] = []
    spans: list[Span] = []
    cursor = 0
    for text, audio in phrases:
        pause = np.zeros(int(rng.uniform(0.25, 0.8) * RATE), np.float32)
        if spans and (cursor + len(pause) + len(audio)) / RATE > MAX_FILE_SECONDS:
            files.append(_finish(f"joined{len(files)}", parts, spans, cursor, rng))
            parts, spans, cursor = [], [], 0
        parts += [pause, audio]
        cursor += len(pause)
        spans.append(Span(text, cursor / RATE, (cursor + len(audio)) / RATE))
        cursor += len(audio)
    files.append(_finish(f"joined{len(files)}", parts, spans, cursor, rng))
    return files


def _finish(name: str, parts: list[np.ndarray], spans: list[Span], cursor: int,
            rng: random.Random) -> ReferenceFile:
    tail = np.zeros(int(rng.uniform(0.25, 0.8) * RATE), np.float32)
    samples = np.concatenate([*parts, tail])
    noise = np.random.default_rng(rng.randrange(2**32)).standard_normal(len(samples)).astype(np.float32)
    return ReferenceFile(name, samples + noise * 10 ** (-70 / 20), tuple(spans), "joined")


def reference_set(seed: int = 0) -> list[ReferenceFile]:
    return labelled() + joined(seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    listing = {}
    for ref in reference_set(args.seed):
        sf.write(args.out / f"{ref.name}.wav", ref.samples, RATE, subtype="PCM_16")
        listing[ref.name] = {"kind": ref.kind, "spans": [vars(span) for span in ref.spans]}
    (args.out / "reference.json").write_text(json.dumps(listing, indent=1))
    print(f"{len(listing)} files, {sum(len(v['spans']) for v in listing.values())} spans -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
