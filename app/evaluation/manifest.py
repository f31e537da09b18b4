"""Reading an evaluation manifest: which audio files to transcribe and what they should say.

Two formats, chosen by extension (.jsonl/.json = JSON lines, anything else = TSV):
- TSV with a header row naming the columns `path` and `reference` (aliases `audio`, `text`) and optionally
  `language`; other columns are ignored.
- JSON lines: {"audio" | "path": ..., "text" | "reference": ..., "language": ...?} per line.
Relative audio paths resolve against the manifest's directory. Every problem is reported with its line
number, all at once, so a user fixes a manifest in one pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from models.languages import UnknownLanguageError, to_code

_PATH_KEYS = ("path", "audio")
_REFERENCE_KEYS = ("reference", "text")
_MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True)
class ManifestItem:
    path: Path  # absolute
    reference: str
    language: str | None  # ISO 639-1 code; None = unknown (the recognizer detects it)
    line: int  # 1-based line of the manifest, for messages


class ManifestError(ValueError):
    """The manifest cannot be used; the message names every faulty line."""


def read_manifest(manifest: Path, *, default_language: str | None = None) -> list[ManifestItem]:
    """Parse `manifest`; items without a language get `default_language`. Raise ManifestError."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ManifestError(f"manifest not found: {manifest}")
    default = _language(default_language, manifest, 0) if default_language else None
    text = manifest.read_text(encoding="utf-8-sig")
    is_jsonl = manifest.suffix.lower() in (".jsonl", ".json")
    records, problems = (_jsonl_records if is_jsonl else _tsv_records)(text, manifest)
    items: list[ManifestItem] = []
    for line, path, reference, language in records:
        try:
            items.append(_item(manifest, line, path, reference, language, default))
        except ManifestError as exc:
            problems.append(str(exc))
    if problems:
        shown = problems[:_MAX_LISTED_PROBLEMS]
        more = len(problems) - len(shown)
        raise ManifestError("\n".join(shown + ([f"... and {more} more problems"] if more else [])))
    if not items:
        raise ManifestError(f"{manifest}: no items")
    return items


_Record = tuple[int, str, str, str | None]  # line, path, reference, language


def _tsv_records(text: str, manifest: Path) -> tuple[list[_Record], list[str]]:
    lines = text.splitlines()
    header_index = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_index is None:
        raise ManifestError(f"{manifest}: empty manifest")
    header = [name.strip().lower() for name in lines[header_index].split("\t")]
    path_col, ref_col = _column(header, _PATH_KEYS), _column(header, _REFERENCE_KEYS)
    if path_col is None or ref_col is None:
        raise ManifestError(f"{manifest}:{header_index + 1}: the header must name the tab-separated columns "
                            f"'path' and 'reference' (optionally 'language'); found {header}")
    lang_col = _column(header, ("language",))
    records: list[_Record] = []
    problems: list[str] = []
    for number, line in enumerate(lines[header_index + 1:], start=header_index + 2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) <= max(path_col, ref_col):
            problems.append(f"{manifest}:{number}: expected {len(header)} tab-separated fields "
                            f"({', '.join(header)}), found {len(fields)}")
            continue
        language = fields[lang_col].strip() if lang_col is not None and lang_col < len(fields) else None
        records.append((number, fields[path_col].strip(), fields[ref_col].strip(), language or None))
    return records, problems


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    return next((header.index(name) for name in names if name in header), None)


def _jsonl_records(text: str, manifest: Path) -> tuple[list[_Record], list[str]]:
    records: list[_Record] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{manifest}:{number}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(record, dict):
            problems.append(f"{manifest}:{number}: expected a JSON object")
            continue
        path = next((record[k] for k in _PATH_KEYS if k in record), None)
        reference = next((record[k] for k in _REFERENCE_KEYS if k in record), None)
        if not isinstance(path, str) or not isinstance(reference, str):
            problems.append(f"{manifest}:{number}: needs string fields \"audio\" (or \"path\") and "
                            f"\"text\" (or \"reference\"); found keys {sorted(record)}")
            continue
        language = record.get("language")
        if language is not None and not isinstance(language, str):
            problems.append(f"{manifest}:{number}: \"language\" must be a string")
            continue
        records.append((number, path.strip(), reference.strip(), (language or "").strip() or None))
    return records, problems


def _item(manifest: Path, line: int, path: str, reference: str, language: str | None,
          default: str | None) -> ManifestItem:
    if not path:
        raise ManifestError(f"{manifest}:{line}: empty audio path")
    resolved = Path(path).expanduser()
    if not resolved.is_absolute():
        resolved = manifest.parent / resolved
    if not resolved.is_file():
        raise ManifestError(f"{manifest}:{line}: audio file not found: {resolved}")
    code = _language(language, manifest, line) if language else default
    return ManifestItem(path=resolved.resolve(), reference=reference, language=code, line=line)


def _language(language: str, manifest: Path, line: int) -> str:
    try:
        return to_code(language)
    except UnknownLanguageError as exc:
        where = f"{manifest}:{line}" if line else "--language"
        raise ManifestError(f"{where}: {exc}") from None
