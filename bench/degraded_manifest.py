"""`python -m bench.degraded_manifest MANIFEST OUT_DIR`: the manifest's recordings plus degraded copies
(the router training's degradations, seeded), as a new manifest for `mega-asr-server evaluate`.

This is how the evaluation table "fixtures plus degraded variants" is made: clean items should stay on the
base path, degraded ones should go robust, and the sweep shows whether that pays off. `--survival` adds the
cases the speech gate and the guards must not lose (quiet speech, speech in noise at set SNRs, short
utterances; see `survival_variants`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from app.audio.decoding import decode_audio, rms_dbfs
from app.evaluation.manifest import read_manifest
from models.router_training.degrade import degradation_table, mix_at_snr, packet_dropout

# Kinds whose effect on ASR a user would recognise; "heavy" ones chain two.
VARIANTS = ("white_noise", "babble", "reverb", "telephone", "packet_dropout", "combination")
SURVIVAL_VARIANTS = ("quiet", "noise_0db", "noise_5db", "noise_10db", "short")
QUIET_DBFS = -40.0
SHORT_SECONDS = 1.0
_FRAME = 320  # 20 ms


def trimmed(audio: np.ndarray, below_peak_db: float = 20.0, pad_seconds: float = 0.03) -> np.ndarray:
    """The clip cut to its active part: 20 ms frames within `below_peak_db` of the loudest, plus a pad."""
    frames = len(audio) // _FRAME
    power = np.mean(np.square(audio[:frames * _FRAME].reshape(frames, _FRAME), dtype=np.float64), axis=1)
    db = 10 * np.log10(np.maximum(power, 1e-12))
    active = np.flatnonzero(db > db.max() - below_peak_db)
    pad = int(pad_seconds * 16_000)
    return audio[max(0, active[0] * _FRAME - pad):min(len(audio), (active[-1] + 1) * _FRAME + pad)]


def survival_variants(audio: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Speech the speech gate and the guards must keep: the clip at -40 dBFS, in white noise at 0, 5 and
    10 dB SNR, and (only when its active part lasts at most 1 s) trimmed to that part."""
    rng = np.random.default_rng([seed, len(VARIANTS)])
    out = {"quiet": (audio * 10 ** ((QUIET_DBFS - rms_dbfs(audio)) / 20)).astype(np.float32)}
    for snr in (0, 5, 10):
        out[f"noise_{snr}db"] = mix_at_snr(audio, rng.standard_normal(len(audio)).astype(np.float32), snr)
    short = trimmed(audio)
    if len(short) <= SHORT_SECONDS * 16_000:
        out["short"] = short
    return out


def degrade_variants(audio: np.ndarray, pool: list[np.ndarray], seed: int) -> dict[str, np.ndarray]:
    table = degradation_table(pool)
    table["packet_dropout"] = lambda a, rng: packet_dropout(a, rng, coverage=0.2)
    return {kind: table[kind](audio, np.random.default_rng([seed, index]))
            for index, kind in enumerate(VARIANTS)}


def build(manifest: Path, out_dir: Path, seed: int = 0, survival: bool = False) -> Path:
    items = read_manifest(manifest)
    audios = [decode_audio(item.path.read_bytes(), max_seconds=600).samples for item in items]
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = ["path\treference\tlanguage"]
    for index, (item, audio) in enumerate(zip(items, audios)):
        pool = [a for j, a in enumerate(audios) if j != index]
        versions = {"clean": audio, **degrade_variants(audio, pool, seed + index)}
        if survival:
            versions.update(survival_variants(audio, seed + index))
        for kind, samples in versions.items():
            name = f"{index:03d}-{item.path.stem}-{kind}.wav"
            sf.write(out_dir / name, np.clip(samples, -1.0, 1.0), 16_000, subtype="PCM_16")
            rows.append(f"{name}\t{item.reference}\t{item.language or ''}")
    target = out_dir / "MANIFEST.tsv"
    target.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.degraded_manifest", description=__doc__)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--survival", action="store_true", help="add " + ", ".join(SURVIVAL_VARIANTS))
    args = parser.parse_args(argv)
    print(build(args.manifest, args.out_dir, args.seed, args.survival))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
