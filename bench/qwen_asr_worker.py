"""Runs INSIDE the qwen-asr virtual environment (bench/qwen_asr_peer.py starts it): the official `qwen-asr`
package (transformers backend) on the benchmark's clips, offline, at the batch sizes and orders asked for.

Stdlib, numpy, torch and qwen_asr only: this file must not import the project (another transformers).
Input: a JSON file (checkpoint, dtype, threads, clips with their .npy audio and token budgets, runs).
Output: one JSON line on stdout with the seconds and generated tokens of every run.

qwen-asr batches statically in input order: `transcribe` cuts the list into slices of
`max_inference_batch_size` and runs one `generate()` per slice (encoder, then the LM). Its stop ids are
hard-coded (151645/151643) and absent from the benchmark's 264-token vocabulary, so every row generates
exactly `max_new_tokens`: set per slice to the largest of our budgets in it, as a slice runs until its
longest row ends.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch


def _batches(clips: list[dict], batch: int, order: str) -> list[list[dict]]:
    ordered = sorted(clips, key=lambda c: c["seconds"]) if order == "sorted" else list(clips)
    return [ordered[i:i + batch] for i in range(0, len(ordered), batch)]


def _run(model, clips: list[dict], batch: int, order: str, audio: dict[str, np.ndarray]) -> dict:
    generated: list[int] = []
    original = model.model.generate

    def counting_generate(**inputs):
        out = original(**inputs)
        generated.extend([out.sequences.shape[1] - inputs["input_ids"].shape[1]] * out.sequences.shape[0])
        return out

    model.model.generate = counting_generate
    model.max_inference_batch_size = batch
    started = time.perf_counter()
    try:
        for group in _batches(clips, batch, order):
            model.max_new_tokens = max(c["budget"] for c in group)
            model.transcribe(audio=[(audio[c["npy"]], 16_000) for c in group], language="English")
    finally:
        model.model.generate = original
    seconds = time.perf_counter() - started
    total = sum(c["seconds"] for c in clips)
    return {"batch": batch, "order": order, "seconds": seconds, "audio_seconds": total,
            "audio_seconds_per_second": total / seconds, "generated_tokens": generated,
            "budgets_in_order": [c["budget"] for g in _batches(clips, batch, order) for c in g]}


def main(path: str) -> int:
    from qwen_asr import Qwen3ASRModel

    with open(path) as file:
        spec = json.load(file)
    torch.set_num_threads(spec["threads"])
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[spec["dtype"]]
    started = time.perf_counter()
    model = Qwen3ASRModel.from_pretrained(spec["checkpoint"], dtype=dtype, device_map="cpu",
                                          max_inference_batch_size=1, max_new_tokens=8)
    load_seconds = time.perf_counter() - started
    audio = {c["npy"]: np.load(c["npy"]) for c in spec["clips"]}
    warm = min(spec["clips"], key=lambda c: c["seconds"])
    model.transcribe(audio=[(audio[warm["npy"]], 16_000)], language="English")  # lazy initialisation
    runs = [_run(model, spec["clips"], r["batch"], r["order"], audio) for r in spec["runs"]]
    print(json.dumps({"load_seconds": load_seconds, "dtype": spec["dtype"], "torch": torch.__version__,
                      "runs": runs}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
