"""Error counting: Whisper's text normalisers, then word (or character) edit distance with jiwer.

English uses EnglishTextNormalizer (case, punctuation, spelled numbers, British/American spellings);
other languages use BasicTextNormalizer (case, punctuation, symbols). Languages written without spaces
between words (zh, yue, ja, ko, th) are scored by characters with whitespace removed, after converting
Chinese to Simplified characters (Whisper often writes Traditional). Corpus figures are total errors over
total reference units, never an average of per-item rates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

CER_LANGUAGES = frozenset({"zh", "yue", "ja", "ko", "th"})
_SIMPLIFY_LANGUAGES = frozenset({"zh", "yue"})

Unit = Literal["word", "char"]


@dataclass(frozen=True)
class ErrorCount:
    """Edit errors (substitutions + deletions + insertions) against a reference of `units` words/chars."""

    errors: int
    units: int
    unit: Unit

    @property
    def rate(self) -> float:
        return corpus_rate([self])


def uses_cer(language: str | None) -> bool:
    return language in CER_LANGUAGES


def normalize(text: str, language: str | None) -> str:
    """The text as it is compared: normalised, Simplified for Chinese, no spaces for CER languages."""
    normalized = _normalizer(language == "en")(text)
    if language in _SIMPLIFY_LANGUAGES:
        import zhconv

        normalized = zhconv.convert(normalized, "zh-cn")
    if uses_cer(language):
        return "".join(normalized.split())
    return " ".join(normalized.split())


def count_errors(reference: str, hypothesis: str, language: str | None) -> ErrorCount:
    """Errors of `hypothesis` against `reference`, in words (or characters for CER languages)."""
    import jiwer

    unit: Unit = "char" if uses_cer(language) else "word"
    ref, hyp = normalize(reference, language), normalize(hypothesis, language)
    ref_units = list(ref) if unit == "char" else ref.split()
    hyp_units = list(hyp) if unit == "char" else hyp.split()
    if not ref_units or not hyp_units:  # jiwer refuses an empty reference; the count is plain
        return ErrorCount(errors=max(len(ref_units), len(hyp_units)), units=len(ref_units), unit=unit)
    out = jiwer.process_characters(ref, hyp) if unit == "char" else jiwer.process_words(ref, hyp)
    return ErrorCount(errors=out.substitutions + out.deletions + out.insertions, units=len(ref_units),
                      unit=unit)


def corpus_rate(counts: Iterable[ErrorCount]) -> float:
    """Total errors / total reference units. An empty reference set scores 0 if nothing was said, else
    infinity (any output is wrong, and no finite rate says how wrong)."""
    errors = units = 0
    for count in counts:
        errors += count.errors
        units += count.units
    if units == 0:
        return 0.0 if errors == 0 else float("inf")
    return errors / units


@functools.lru_cache(maxsize=2)
def _normalizer(english: bool) -> Callable[[str], str]:
    # Built once: the English normaliser loads its spelling table on construction.
    if english:
        from whisper_normalizer.english import EnglishTextNormalizer

        return EnglishTextNormalizer()
    from whisper_normalizer.basic import BasicTextNormalizer

    return BasicTextNormalizer()
