"""What Qwen3-ASR answers and how to read it.

The model writes `language English<asr_text>the text`; `language None<asr_text>` means it heard no speech,
so nothing after that tag is a transcript. When the prompt forced a language it already ended with
`language {Name}<asr_text>`, so the answer is just the text. Upstream (QwenLM/Qwen3-ASR
`qwen_asr/inference/utils.py`) then collapses runaway repetitions; here the service's guards (app/engine/guards.py)
cut them instead, the same way for every recognizer.
"""

from __future__ import annotations

from models.languages import code_from_model_name

ASR_TEXT_TAG = "<asr_text>"
_LANGUAGE_PREFIX = "language "
_NO_SPEECH = "none"  # the model's language name for "no speech"


def parse_asr_output(raw: str, forced_language: str | None = None) -> tuple[str | None, str]:
    """Decoded answer -> (ISO language code or None, text).

    `forced_language` is the ISO code the prompt forced (the answer then carries no tag, and that code is
    the language). `language None` gives (None, ""): the model's no-speech answer. An unknown or missing
    language name gives None; a missing tag gives the stripped text.
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
    if name.strip().lower() == _NO_SPEECH:
        return None, ""
    return code_from_model_name(name), text.strip()
