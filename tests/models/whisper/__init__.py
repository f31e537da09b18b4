"""Shared helpers for the Whisper tests: a CT2 model.bin writer, real audio clips, a per-session tiny.en.

The real clips live in the shared fixtures (../shared/fixtures/audio, see its PROVENANCE.md); a copy under
tests/fixtures/audio is used first when the project carries one.
"""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

PROJECT = Path(__file__).resolve().parents[3]
AUDIO_DIRS = (PROJECT / "tests" / "fixtures" / "audio", PROJECT.parent / "shared" / "fixtures" / "audio")
AUDIO_DIR = next((d for d in AUDIO_DIRS if (d / "MANIFEST.tsv").is_file()), AUDIO_DIRS[-1])
CT2_DTYPE_IDS = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("int32"): 3,
                 np.dtype("float16"): 4}  # bfloat16 (id 5) is written from raw uint16 bits by the tests


def ct2_str(text: str) -> bytes:
    raw = text.encode("utf-8") + b"\0"
    return struct.pack("<H", len(raw)) + raw


def ct2_variable(name: str, array: np.ndarray, dtype_id: int | None = None) -> bytes:
    array = np.asarray(array)  # tobytes() is C order; ascontiguousarray would turn rank 0 into rank 1
    dtype_id = CT2_DTYPE_IDS[array.dtype] if dtype_id is None else dtype_id
    raw = array.tobytes()
    return (ct2_str(name) + struct.pack("<B", array.ndim) + struct.pack(f"<{array.ndim}I", *array.shape)
            + struct.pack("<BI", dtype_id, len(raw)) + raw)


def write_ct2_model(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str] | None = None,
                    version: int = 6, spec: str = "WhisperSpec", revision: int = 3) -> Path:
    """A model.bin in CTranslate2's layout (see models/whisper/ct2_format.py)."""
    body = struct.pack("<I", version) + ct2_str(spec) + struct.pack("<II", revision, len(variables))
    body += b"".join(ct2_variable(name, array) for name, array in variables.items())
    aliases = aliases or {}
    body += struct.pack("<I", len(aliases)) + b"".join(ct2_str(a) + ct2_str(t) for a, t in aliases.items())
    path.write_bytes(body)
    return path


def manifest() -> list[dict[str, str]]:
    if not (AUDIO_DIR / "MANIFEST.tsv").is_file():
        pytest.skip(f"shared audio fixtures not found in {AUDIO_DIRS}")
    with (AUDIO_DIR / "MANIFEST.tsv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def load_clip(relative: str) -> np.ndarray:
    """A fixture clip as mono float32 16 kHz (the ALSA clips are 48 kHz)."""
    import soxr

    audio, rate = sf.read(AUDIO_DIR / relative, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    return mono if rate == 16_000 else soxr.resample(mono, rate, 16_000).astype(np.float32)


def reference(relative: str) -> str:
    return next(row["reference"] for row in manifest() if row["path"] == relative)


_CONVERTED: dict[str, Path] = {}


def converted_demo_model(name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Convert a demo model once per test session (shared by every test module that asks)."""
    if name not in _CONVERTED:
        from models.whisper.demo_models import BASE, TINY_EN, ensure_demo_model

        source = {"tiny_en": TINY_EN, "base": BASE}[name]
        _CONVERTED[name] = ensure_demo_model(source, tmp_path_factory.mktemp("whisper-cache"), progress=False)
    return _CONVERTED[name]


def tiny_random_whisper() -> torch.nn.Module:
    """A one-layer, 64-wide WhisperForConditionalGeneration with random weights (seed 0), in eval mode."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=100,
                           max_source_positions=20, max_target_positions=16, num_mel_bins=8, pad_token_id=0,
                           bos_token_id=0, eos_token_id=0, decoder_start_token_id=1)
    torch.manual_seed(0)
    return WhisperForConditionalGeneration(config).eval()
