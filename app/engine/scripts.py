"""Which writing systems a language's transcript can be in, and which one a letter belongs to.

A letter's script is the first word of its Unicode name ("LATIN SMALL LETTER A" -> LATIN, "HANGUL SYLLABLE
GA" -> HANGUL, "CJK UNIFIED IDEOGRAPH-4E00" -> CJK). Letters whose name names no script (modifier letters
such as "ʻ", ordinal indicators) belong to none. Languages missing from the table are never checked.
"""

from __future__ import annotations

import functools
import unicodedata

_LATIN = ("af", "az", "br", "bs", "ca", "cs", "cy", "da", "de", "en", "es", "et", "eu", "fi", "fil", "fo", "fr",
          "gl", "ha", "haw", "hr", "ht", "hu", "id", "is", "it", "jw", "la", "lb", "ln", "lt", "lv", "mg", "mi",
          "ms", "mt", "nl", "nn", "no", "oc", "pl", "pt", "ro", "sk", "sl", "sn", "so", "sq", "su", "sv", "sw",
          "tk", "tl", "tr", "uz", "vi", "yo")
_CYRILLIC = ("ba", "be", "bg", "kk", "mk", "mn", "ru", "tg", "tt", "uk")
_OTHER: dict[str, frozenset[str]] = {
    "sr": frozenset({"CYRILLIC", "LATIN"}), "el": frozenset({"GREEK"}),
    "ar": frozenset({"ARABIC"}), "fa": frozenset({"ARABIC"}), "ur": frozenset({"ARABIC"}),
    "ps": frozenset({"ARABIC"}), "sd": frozenset({"ARABIC"}), "he": frozenset({"HEBREW"}),
    "yi": frozenset({"HEBREW"}), "hi": frozenset({"DEVANAGARI"}), "mr": frozenset({"DEVANAGARI"}),
    "ne": frozenset({"DEVANAGARI"}), "sa": frozenset({"DEVANAGARI"}), "bn": frozenset({"BENGALI"}),
    "as": frozenset({"BENGALI"}), "pa": frozenset({"GURMUKHI"}), "gu": frozenset({"GUJARATI"}),
    "ta": frozenset({"TAMIL"}), "te": frozenset({"TELUGU"}), "kn": frozenset({"KANNADA"}),
    "ml": frozenset({"MALAYALAM"}), "si": frozenset({"SINHALA"}), "th": frozenset({"THAI"}),
    "lo": frozenset({"LAO"}), "km": frozenset({"KHMER"}), "my": frozenset({"MYANMAR"}),
    "bo": frozenset({"TIBETAN"}), "ka": frozenset({"GEORGIAN"}), "hy": frozenset({"ARMENIAN"}),
    "am": frozenset({"ETHIOPIC"}), "zh": frozenset({"CJK"}), "yue": frozenset({"CJK"}),
    "ja": frozenset({"CJK", "HIRAGANA", "KATAKANA"}), "ko": frozenset({"HANGUL", "CJK"}),
}
LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **{code: frozenset({"LATIN"}) for code in _LATIN},
    **{code: frozenset({"CYRILLIC"}) for code in _CYRILLIC},
    **_OTHER,
}
_SCRIPTS = frozenset().union(*LANGUAGE_SCRIPTS.values())
_PER_CHARACTER = frozenset({"CJK", "HIRAGANA", "KATAKANA"})
_ALIASES = {"FULLWIDTH": "LATIN", "HALFWIDTH": "KATAKANA"}  # "FULLWIDTH LATIN ...", "HALFWIDTH KATAKANA ..."


@functools.lru_cache(maxsize=4096)
def script_of(character: str) -> str | None:
    """The script of a letter (one of the table's scripts), else None (not a letter, or no script)."""
    if not unicodedata.category(character).startswith("L"):
        return None
    first = unicodedata.name(character, "").split(" ", 1)[0]
    first = _ALIASES.get(first, first)
    return first if first in _SCRIPTS else None


def word_characters(text: str) -> int:
    """Digits plus letters of a known script: what a transcript that says anything is made of."""
    return sum(1 for c in text if c.isdigit() or script_of(c) is not None)


def script_units(text: str) -> list[str]:
    """The script of each unit of the text: a run of letters of one script (a word, roughly), except that
    every Han or kana character is a unit of its own (those scripts write a word in one to three)."""
    units: list[str] = []
    previous: str | None = None
    for script in map(script_of, text):
        if script is not None and (script != previous or script in _PER_CHARACTER):
            units.append(script)
        previous = script
    return units


def share_in_scripts(text: str, language: str) -> float | None:
    """Fraction of the text's script units that `language` can be written in; None when the language is not
    in the table or the text has no script letters."""
    allowed = LANGUAGE_SCRIPTS.get(language)
    units = script_units(text)
    if allowed is None or not units:
        return None
    return sum(1 for script in units if script in allowed) / len(units)
