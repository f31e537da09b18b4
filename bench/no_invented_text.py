"""`python -m bench.no_invented_text --url URL --out FILE.json`: words a running service invents on recordings
without speech, and its corpus error rate per kind of speech recording.

Non-speech: every recording in tests/fixtures/audio/nonspeech, uploaded as a new user would (no language).
Speech: the fixture manifest's recordings, clean, with the degraded-manifest variants (noise, babble, reverb,
telephone, dropouts, combinations) and the survival variants (-40 dBFS, white noise at 0/5/10 dB SNR, short
utterances), seeded, each sent with its manifest language. Error rate = WER (CER for Chinese), corpus level,
with the evaluation command's scoring. Run it against the service before and after a change.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from app.audio.decoding import decode_audio
from app.evaluation.manifest import read_manifest
from app.evaluation.scoring import corpus_rate, count_errors, normalize
from bench.degraded_manifest import degrade_variants, survival_variants

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audio"
NONSPEECH = FIXTURES / "nonspeech"


@dataclass(frozen=True)
class Answer:
    name: str
    kind: str
    language: str | None
    reference: str
    text: str
    no_speech: bool
    route: str
    flags: list[str]


def speech_cases(seed: int = 0) -> list[tuple[str, str, str | None, str, np.ndarray]]:
    """(name, kind, language, reference, audio) for every manifest recording and variant."""
    items = read_manifest(FIXTURES / "MANIFEST.tsv")
    audios = [decode_audio(item.path.read_bytes(), max_seconds=600).samples for item in items]
    cases = []
    for index, (item, audio) in enumerate(zip(items, audios)):
        pool = [a for j, a in enumerate(audios) if j != index]
        versions = {"clean": audio, **degrade_variants(audio, pool, seed + index),
                    **survival_variants(audio, seed + index)}
        cases += [(item.path.name, kind, item.language, item.reference, samples)
                  for kind, samples in versions.items()]
    return cases


def nonspeech_cases() -> list[tuple[str, str, str | None, str, bytes]]:
    rows = [line.split("\t") for line in (NONSPEECH / "MANIFEST.tsv").read_text().splitlines()[1:]]
    return [(path, kind, None, "", (NONSPEECH / path).read_bytes()) for path, kind, _ in rows]


def _wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), 16_000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def transcribe(url: str, case: tuple, client: httpx.Client) -> Answer:
    name, kind, language, reference, audio = case
    data = audio if isinstance(audio, bytes) else _wav(audio)
    answer = client.post(f"{url}/v1/audio/transcriptions", files={"file": (name, data)},
                         data={"language": language} if language else {})
    answer.raise_for_status()
    body = answer.json()
    return Answer(name=name, kind=kind, language=language, reference=reference, text=body["text"],
                  no_speech=body["no_speech"], route=body["route"], flags=body.get("flags", []))


def words(answer: Answer) -> int:
    """Words (characters for CER languages) of an answer, as the scoring normalises them."""
    count = count_errors("", answer.text, answer.language)
    return count.errors


def report(answers: list[Answer]) -> str:
    nonspeech = [a for a in answers if not a.reference]
    lines = ["| non-speech recording | kind | words | text |", "|---|---|---|---|"]
    lines += [f"| {a.name} | {a.kind} | {words(a)} | {a.text[:60]!r} |" for a in nonspeech]
    lines += ["", "| speech kind | items | error rate | items flagged | items empty |", "|---|---|---|---|---|"]
    speech = [a for a in answers if a.reference]
    for kind in dict.fromkeys(a.kind for a in speech):
        group = [a for a in speech if a.kind == kind]
        rate = corpus_rate(count_errors(a.reference, a.text, a.language) for a in group)
        empty = sum(1 for a in group if not normalize(a.text, a.language))
        flagged = sum(1 for a in group if a.flags)
        lines.append(f"| {kind} | {len(group)} | {100 * rate:.1f} % | {flagged} | {empty} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.no_invented_text", description=__doc__)
    parser.add_argument("--url", required=True, help="a running service, e.g. http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, required=True, help="where to write every answer (JSON)")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    cases = [*nonspeech_cases(), *speech_cases()]
    with httpx.Client(timeout=900) as client, concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        answers = list(pool.map(lambda case: transcribe(args.url, case, client), cases))
    args.out.write_text(json.dumps([asdict(a) for a in answers], ensure_ascii=False, indent=1))
    print(report(answers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
