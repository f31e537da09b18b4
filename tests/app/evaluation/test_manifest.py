from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.evaluation.manifest import ManifestError, read_manifest


@pytest.fixture
def audio_dir(tmp_path: Path) -> Path:
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.wav").write_bytes(b"RIFF")
    return tmp_path


def test_tsv_resolves_relative_paths_against_the_manifest_directory(audio_dir, tmp_path, monkeypatch):
    manifest = audio_dir / "m.tsv"
    manifest.write_text("path\treference\tlanguage\na.wav\thello there\ten\n\nsub/b.wav\tni hao\tChinese\n")
    monkeypatch.chdir(tmp_path.parent)  # resolution must not depend on the working directory
    items = read_manifest(manifest)
    assert [(i.path, i.reference, i.language, i.line) for i in items] == [
        (audio_dir / "a.wav", "hello there", "en", 2), (audio_dir / "sub" / "b.wav", "ni hao", "zh", 4)]


def test_tsv_columns_in_any_order_language_optional_and_default(audio_dir):
    manifest = audio_dir / "m.tsv"
    manifest.write_text(f"reference\tspeaker\tpath\nhello\tx\t{audio_dir / 'a.wav'}\n")
    items = read_manifest(manifest, default_language="fr")
    assert items[0].path == audio_dir / "a.wav" and items[0].reference == "hello" and items[0].language == "fr"
    assert read_manifest(manifest)[0].language is None


def test_tsv_missing_column_is_named_with_the_header_line(audio_dir):
    manifest = audio_dir / "m.tsv"
    manifest.write_text("path\tlanguage\na.wav\ten\n")
    with pytest.raises(ManifestError, match=r"m\.tsv:1: the header must name .*'reference'"):
        read_manifest(manifest)


def test_every_bad_line_is_reported_at_once(audio_dir):
    manifest = audio_dir / "m.tsv"
    manifest.write_text("path\treference\tlanguage\na.wav\n"
                        "missing.wav\tsome words\ten\na.wav\twords\tklingon\n")
    with pytest.raises(ManifestError) as raised:
        read_manifest(manifest)
    message = str(raised.value)
    assert "m.tsv:2: expected 3 tab-separated fields" in message
    assert f"m.tsv:3: audio file not found: {audio_dir / 'missing.wav'}" in message
    assert "m.tsv:4: unknown language 'klingon'" in message


def test_jsonl_with_either_key_names(audio_dir):
    manifest = audio_dir / "m.jsonl"
    rows = [{"audio": "a.wav", "text": "one"}, {"path": "sub/b.wav", "reference": "two", "language": "de"}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items = read_manifest(manifest)
    assert [(i.path.name, i.reference, i.language) for i in items] == [("a.wav", "one", None), ("b.wav", "two", "de")]


def test_jsonl_errors_carry_line_numbers(audio_dir):
    manifest = audio_dir / "m.jsonl"
    manifest.write_text('{"audio": "a.wav", "text": "ok"}\n{not json\n{"audio": "a.wav"}\n[1]\n')
    with pytest.raises(ManifestError) as raised:
        read_manifest(manifest)
    message = str(raised.value)
    assert "m.jsonl:2: not valid JSON" in message
    assert 'm.jsonl:3: needs string fields "audio"' in message
    assert "m.jsonl:4: expected a JSON object" in message


def test_missing_or_empty_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nope.tsv")
    empty = tmp_path / "empty.tsv"
    empty.write_text("path\treference\n")
    with pytest.raises(ManifestError, match="no items"):
        read_manifest(empty)


def test_bad_default_language_is_refused(audio_dir):
    manifest = audio_dir / "m.tsv"
    manifest.write_text("path\treference\na.wav\thi\n")
    with pytest.raises(ManifestError, match="--language: unknown language"):
        read_manifest(manifest, default_language="xx-nope")


def test_the_project_fixture_manifest_parses():
    manifest = Path(__file__).resolve().parents[2] / "fixtures" / "audio" / "MANIFEST.tsv"
    items = read_manifest(manifest)
    assert len(items) == 18 and {i.language for i in items} == {"en", "zh"}
    assert all(i.path.is_file() for i in items)
