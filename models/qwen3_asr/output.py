"""What Qwen3-ASR answers and how to read it.

The model writes `language English<asr_text>the text`; `language None<asr_text>` means it heard no speech.
When the prompt forced a language it already ended with `language {Name}<asr_text>`, so the answer is
just the text. Upstream (QwenLM/Qwen3-ASR `qwen_asr/inference/utils.py`, kept in transformers' processor)
then collapses runaway repetitions - a decoding failure mode of the model - and so do we.
"""

from __future__ import annotations

from models.languages import code_from_model_name

ASR_TEXT_TAG = "<asr_text>"
_LANGUAGE_PREFIX = "language "
_MAX_PATTERN_CHARS = 20  # longest repeated pattern upstream looks for


def parse_asr_output(raw: str, forced_language: str | None = None) -> tuple[str | None, str]:
    """Decoded answer -> (ISO language code or None, text).

    `forced_language` is the ISO code the prompt forced (the answer then carries no tag, and that code is
    the language). An unknown or missing language name gives None; a missing tag gives the stripped text.
    """
    answer = raw.strip()
    if ASR_TEXT_TAG not in answer:
        return forced_language, answer
    header, text = answer.split(ASR_TEXT_TAG, 1)
    if forced_language is not None:  # the model repeated the tag the prompt already had
        return forced_language, text.strip()
    # Like upstream: only the first non-empty line of the header names the language.
    lines = [line.strip() for line in header.splitlines() if line.strip()]
    name = lines[0] if lines else ""
    if name.lower().startswith(_LANGUAGE_PREFIX):
        name = name[len(_LANGUAGE_PREFIX):]
    return code_from_model_name(name), text.strip()


def _collapse_char_runs(text: str, threshold: int) -> str:
    """A run of one character longer than `threshold` becomes that single character."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = start + 1
        while end < len(text) and text[end] == text[start]:
            end += 1
        pieces.append(text[start] if end - start > threshold else text[start:end])
        start = end
    return "".join(pieces)


def _repeated_pattern_length(text: str, start: int, threshold: int) -> int:
    """Shortest k (1..20) such that text[start:start+k] occurs `threshold` times back to back; 0 if none."""
    for length in range(1, _MAX_PATTERN_CHARS + 1):
        if start + length * threshold > len(text):
            break
        pattern = text[start:start + length]
        if all(text[start + rep * length:start + (rep + 1) * length] == pattern for rep in range(1, threshold)):
            return length
    return 0


def _collapse_pattern_runs(text: str, threshold: int) -> str:
    """A pattern of up to 20 characters repeated `threshold` or more times becomes one occurrence.

    Same scan as upstream (which recurses on the rest of the string after each collapse): positions are
    tried left to right while at least 2 * threshold characters remain.
    """
    pieces: list[str] = []
    committed = 0
    position = 0
    while position <= len(text) - 2 * threshold:
        length = _repeated_pattern_length(text, position, threshold)
        if not length:
            position += 1
            continue
        pattern = text[position:position + length]
        end = position + threshold * length
        while text[end:end + length] == pattern:
            end += length
        pieces += [text[committed:position], pattern]
        committed = position = end
    pieces.append(text[committed:])
    return "".join(pieces)


def collapse_repetitions(text: str, threshold: int = 20) -> str:
    """Upstream's guard against runaway decoding: character runs longer than `threshold`, then patterns of
    up to 20 characters repeated `threshold` or more times, collapse to a single occurrence."""
    return _collapse_pattern_runs(_collapse_char_runs(text, threshold), threshold)
