"""WER of benchmark answers against the clips' references (whisper-normalizer + jiwer)."""

from __future__ import annotations

from bench.clips import Clip


def wer(clips: list[Clip], texts: dict[str, str]) -> float:
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalize = EnglishTextNormalizer()
    refs, hyps = [], []
    for clip in {c.name: c for c in clips}.values():
        if clip.name in texts:
            refs.append(normalize(clip.reference))
            hyps.append(normalize(texts[clip.name]))
    return float(jiwer.wer(refs, hyps)) if refs else float("nan")
