"""`python -m bench.degraded_manifest MANIFEST OUT_DIR`: the manifest's recordings plus degraded copies
(the router training's degradations, seeded), as a new manifest for `mega-asr-server evaluate`.

This is how the evaluation table "fixtures plus degraded variants" is made: clean items should stay on the
base path, degraded ones should go robust, and the sweep shows whether that pays off.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from app.audio import decode_audio
from app.evaluation.manifest import read_manifest
from models.router_training.degrade import degradation_table, packet_dropout

# Kinds whose effect on ASR a user would recognise; "heavy" ones chain two.
VARIANTS = ("white_noise", "babble", "reverb", "telephone", "packet_dropout", "combination")


def degrade_variants(audio: np.ndarray, pool: list[np.ndarray], seed: int) -> dict[str, np.ndarray]:
    table = degradation_table(pool)
    table["packet_dropout"] = lambda a, rng: packet_dropout(a, rng, coverage=0.2)
    return {kind: table[kind](audio, np.random.default_rng([seed, index]))
            for index, kind in enumerate(VARIANTS)}


def build(manifest: Path, out_dir: Path, seed: int = 0) -> Path:
    items = read_manifest(manifest)
    audios = [decode_audio(item.path.read_bytes(), max_seconds=600).samples for item in items]
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = ["path\treference\tlanguage"]
    for index, (item, audio) in enumerate(zip(items, audios)):
        pool = [a for j, a in enumerate(audios) if j != index]
        versions = {"clean": audio, **degrade_variants(audio, pool, seed + index)}
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
    args = parser.parse_args(argv)
    print(build(args.manifest, args.out_dir, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
