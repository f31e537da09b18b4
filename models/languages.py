"""Language names and ISO 639 codes, one table for every model and the API.

Qwen3-ASR prompts and answers with English names ("language English"); Whisper and the OpenAI API use
ISO codes ("en"). Requests may give either; everything inside the service uses the code.
"""

from __future__ import annotations

# ISO 639-1 (or 639-3 where no 2-letter code exists) -> English name as Qwen3-ASR writes it.
LANGUAGE_NAMES: dict[str, str] = {
    "zh": "Chinese", "en": "English", "yue": "Cantonese", "ar": "Arabic", "de": "German",
    "fr": "French", "es": "Spanish", "pt": "Portuguese", "id": "Indonesian", "it": "Italian",
    "ko": "Korean", "ru": "Russian", "th": "Thai", "vi": "Vietnamese", "ja": "Japanese",
    "tr": "Turkish", "hi": "Hindi", "ms": "Malay", "nl": "Dutch", "sv": "Swedish", "da": "Danish",
    "fi": "Finnish", "pl": "Polish", "cs": "Czech", "fil": "Filipino", "fa": "Persian", "el": "Greek",
    "ro": "Romanian", "hu": "Hungarian", "mk": "Macedonian", "uk": "Ukrainian", "ca": "Catalan",
    "he": "Hebrew", "no": "Norwegian", "ta": "Tamil", "ur": "Urdu", "bn": "Bengali", "sk": "Slovak",
    "hr": "Croatian", "bg": "Bulgarian", "lt": "Lithuanian", "lv": "Latvian", "sl": "Slovenian",
    "et": "Estonian", "sr": "Serbian", "tl": "Tagalog", "sw": "Swahili", "cy": "Welsh",
}
_CODE_BY_NAME = {name.lower(): code for code, name in LANGUAGE_NAMES.items()}

# The 30 languages Qwen3-ASR-1.7B was trained on (its model card); Chinese dialects are answered as "zh".
QWEN3_ASR_LANGUAGES: frozenset[str] = frozenset(
    ["zh", "en", "yue", "ar", "de", "fr", "es", "pt", "id", "it", "ko", "ru", "th", "vi", "ja", "tr", "hi", "ms", "nl", "sv", "da", "fi", "pl", "cs", "fil", "fa", "el", "ro", "hu", "mk"]
)


class UnknownLanguageError(ValueError):
    """A language given by a caller that is neither a known code nor a known name."""


def to_code(language: str) -> str:
    """Normalise "en", "EN", "English" or "english" to "en"; raise UnknownLanguageError otherwise."""
    key = language.strip().lower()
    if key in LANGUAGE_NAMES:
        return key
    if key in _CODE_BY_NAME:
        return _CODE_BY_NAME[key]
    raise UnknownLanguageError(f"unknown language {language!r}: give an ISO 639-1 code such as 'en' or a name")


def to_name(code: str) -> str:
    """"en" -> "English" (the form Qwen3-ASR prompts use)."""
    return LANGUAGE_NAMES[code]


def code_from_model_name(name: str) -> str | None:
    """Map a name a model wrote ("English", "None", "Sichuanese") to a code; None for no/unknown language."""
    key = name.strip().lower()
    if key in ("", "none"):
        return None
    return _CODE_BY_NAME.get(key)
