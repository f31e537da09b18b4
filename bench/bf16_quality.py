"""`python -m bench.bf16_quality`: does bf16 cost the demo accuracy? The shared recordings and their degraded
copies (bench/degraded_manifest.py, seed 0) through the evaluation command's runner and scoring, both paths
per item, once per precision of the two Whisper models (the router stays fp32 in all of them):

- fp32: as served on CPUs without native bf16;
- bf16: the models cast to bf16 and run by torch's own bf16 CPU kernels (real bf16 numerics; on a CPU
  without bf16 hardware slow, 3-8x fp32 for these models, but exact);
- bf16-emulated: the bf16 models with matrix ops computed as bf16 hardware does (bench/bf16_emulation.py);
  cheaper, and checked against the real run;
- int8: the service's int8 path (models/quantized.py, plan models.linear_plans.WHISPER: per-row int8
  activations, row-by-row attention); int8-tensor: FBGEMM's per-tensor scheme (not batch-invariant, for
  comparison); fp16-weights: fp16 weights, fp32 activations.

For the packed variants the corpus is also decoded one segment at a time (`--alone`), and the texts are
compared with the batched run's: the batch-invariance check on real audio. `--isa avx2` runs as on an
AVX2-only CPU (bench/isa.py).

Separately the router: its scores in fp32 and in bf16 on every item, and how many routes flip at 0.5.
Writes JSON (default bench/results/bf16_quality.json) and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from app.audio.decoding import decode_audio
from app.engine.pipeline import Pipeline
from app.evaluation.calibrate import point_at
from app.evaluation.command import evaluate
from app.evaluation.manifest import read_manifest
from app.evaluation.results import EvaluationResult
from app.evaluation.runners import InProcessConfig, InProcessRunner
from bench.bf16_emulation import Bf16MatmulOnFp32
from models.recognition import Recognition, RecognitionItem

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audio" / "MANIFEST.tsv"
VARIANTS = ("fp32", "bf16", "bf16-emulated")
PACKED = {"int8": "int8", "int8-tensor": "int8-tensor", "fp16-weights": "fp16"}


class EmulatedBf16:
    """A bf16 recognizer whose matrix ops run under Bf16MatmulOnFp32."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def languages(self, robust: bool) -> frozenset[str] | None:
        return self.inner.languages(robust)

    def recognize(self, items: Sequence[RecognitionItem]) -> list[Recognition]:
        with Bf16MatmulOnFp32():
            return self.inner.recognize(items)


def demo_pipeline(variant: str, scorer) -> Pipeline:
    from app.settings import Settings
    from models.whisper.demo_models import ensure_demo_models
    from models.whisper.recognizer import RoutedWhisperRecognizer, WhisperRecognizer

    paths = ensure_demo_models(Settings(profile="demo").cache_dir, progress=False)
    dtype = torch.bfloat16 if variant.startswith("bf16") else torch.float32
    packed = PACKED.get(variant)
    recognizer = RoutedWhisperRecognizer(
        base=WhisperRecognizer.from_pretrained(paths.tiny_en, dtype=dtype, packed=packed),
        robust=WhisperRecognizer.from_pretrained(paths.base, dtype=dtype, packed=packed))
    chosen = EmulatedBf16(recognizer) if variant == "bf16-emulated" else recognizer
    return Pipeline(chosen, scorer, routing="router", description=f"demo, Whisper in {variant}")


def summary(result: EvaluationResult, seconds: float) -> dict:
    return {"base_only": result.baselines.base.rate, "robust_only": result.baselines.robust.rate,
            "routed_at_0.5": point_at(result.sweep, 0.5).rate, "seconds": seconds,
            "texts": {str(s.transcripts.item.path.name): [s.transcripts.base.text if s.transcripts.base else None,
                                                          s.transcripts.robust.text if s.transcripts.robust else None]
                      for s in result.items}}


def identical_share(a: dict, b: dict, path: int) -> float:
    pairs = [(a[k][path], b[k][path]) for k in a if a[k][path] is not None]
    return sum(x == y for x, y in pairs) / len(pairs)


def router_shift(scorer, manifest: Path) -> dict:
    """Router scores in fp32 and bf16 on every item: largest change and routes flipped at 0.5."""
    from models.router.scorer import RouterScorer

    audios = [decode_audio(item.path.read_bytes(), max_seconds=600).samples for item in read_manifest(manifest)]
    fp32 = np.array(scorer.score(audios))
    bf16 = np.array(RouterScorer(scorer.model.to(torch.bfloat16), dtype=torch.bfloat16).score(audios))
    scorer.model.to(torch.float32)
    return {"items": len(audios), "max_abs_change": float(np.abs(bf16 - fp32).max()),
            "mean_abs_change": float(np.abs(bf16 - fp32).mean()),
            "routes_flipped_at_0.5": int(((fp32 >= 0.5) != (bf16 >= 0.5)).sum())}


def alone_check(manifest: Path, items: list, pipeline: Pipeline, batched: dict) -> dict:
    """The corpus again, one segment per recognizer call: how many texts equal the batched run's."""
    runner = InProcessRunner(pipeline, InProcessConfig(progress=False, batch_size=1))
    alone = summary(evaluate(manifest, items, runner, source="alone"), 0.0)["texts"]
    pairs = [(alone[k][p], batched[k][p]) for k in alone for p in (0, 1) if alone[k][p] is not None]
    differing = sorted({k for k in alone for p in (0, 1) if alone[k][p] != batched[k][p]})
    return {"texts": len(pairs), "identical": sum(a == b for a, b in pairs), "differing_items": differing}


def run(manifest: Path, variants: Sequence[str], alone: Sequence[str] = ()) -> dict:
    from app.profiles import demo_router_path
    from models.router.checkpoint import load_router
    from models.router.scorer import RouterScorer

    scorer = RouterScorer(load_router(demo_router_path())[0])
    items = read_manifest(manifest)
    out: dict = {"manifest": str(manifest), "items": len(items), "variants": {}}
    for variant in variants:
        pipeline = demo_pipeline(variant, scorer)
        runner = InProcessRunner(pipeline, InProcessConfig(progress=False))
        started = time.perf_counter()
        result = evaluate(manifest, items, runner, source=variant)
        out["variants"][variant] = summary(result, time.perf_counter() - started)
        if variant in alone:
            out["variants"][variant]["batched_vs_alone"] = alone_check(manifest, items, pipeline,
                                                                       out["variants"][variant]["texts"])
        print(f"{variant}: {json.dumps({k: v for k, v in out['variants'][variant].items() if k != 'texts'})}",
              flush=True)
    reference = out["variants"].get("fp32")
    for variant, figures in out["variants"].items():
        if reference is not None and variant != "fp32":
            figures["vs_fp32"] = {"identical_base_texts": identical_share(reference["texts"], figures["texts"], 0),
                                  "identical_robust_texts": identical_share(reference["texts"], figures["texts"], 1)}
            figures["vs_fp32"].update({f"{k}_points": 100 * (figures[k] - reference[k])
                                       for k in ("base_only", "robust_only", "routed_at_0.5")})
    out["router"] = router_shift(scorer, manifest)
    return out


def table(out: dict) -> str:
    header = "| variant | base only (tiny.en) | robust only (base) | routed @ 0.5 | identical texts base / robust |"
    lines = [header + " seconds |", "|---|---|---|---|---|---|"]
    for variant, f in out["variants"].items():
        same = f.get("vs_fp32")
        identical = f"{same['identical_base_texts']:.0%} / {same['identical_robust_texts']:.0%}" if same else "-"
        lines.append(f"| {variant} | {f['base_only']:.2%} | {f['robust_only']:.2%} | {f['routed_at_0.5']:.2%} | "
                     f"{identical} | {f['seconds']:.0f} |")
    for variant, f in out["variants"].items():
        if "batched_vs_alone" in f:
            check = f["batched_vs_alone"]
            lines.append(f"\n{variant}: batched = alone for {check['identical']} of {check['texts']} texts "
                         f"(differing items: {', '.join(check['differing_items']) or 'none'})")
    router = out["router"]
    lines.append(f"\nRouter fp32 -> bf16 on {router['items']} items: max |change| {router['max_abs_change']:.4f}, "
                 f"mean {router['mean_abs_change']:.4f}, routes flipped at 0.5: {router['routes_flipped_at_0.5']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bf16_quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, help="default: the fixtures plus their degraded copies")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--alone", default="", help="variants also decoded one segment at a time (invariance)")
    parser.add_argument("--isa", default="native", choices=("native", "avx2"), help="avx2: as on an AVX2-only CPU")
    parser.add_argument("--out", type=Path, default=Path("bench/results/bf16_quality.json"))
    args = parser.parse_args(argv)
    from bench.isa import isa_label, restart_limited

    restart_limited(args.isa)
    with contextlib.ExitStack() as stack:
        manifest = args.manifest
        if manifest is None:
            from bench.degraded_manifest import build

            manifest = build(FIXTURES, Path(stack.enter_context(tempfile.TemporaryDirectory())), seed=0)
        out = run(manifest, args.variants.split(","), [v for v in args.alone.split(",") if v])
    out["isa"] = isa_label()
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False))
    print(table(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
