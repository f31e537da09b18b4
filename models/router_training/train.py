"""Seeded router training on CPU: examples (crop + degradation), the AdamW loop, and the held-out report.

Label 1 = degraded. Every random draw comes from a numpy Generator seeded by (seed, purpose, index) or from
torch's seeded generator, and torch runs a fixed number of threads, so a run is reproducible bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from models.router.features import SAMPLE_RATE, log_mel
from models.router.network import AudioQualityClassifier, RouterConfig
from models.router.scorer import RouterScorer
from models.router_training.data import CleanClip
from models.router_training.degrade import (
    KINDS,
    Degradation,
    degradation_table,
    mild_clean,
    random_level,
    vary_recording,
)

CLEAN_KINDS = ("clean", "clean_mild")  # held-out: the untouched clip, and with harmless changes


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    epochs: int = 4
    steps_per_epoch: int = 300
    batch_size: int = 16
    learning_rate: float = 5e-4
    weight_decay: float = 0.05
    ema_decay: float = 0.995  # the shipped weights are an exponential moving average of the trained ones
    warmup_steps: int = 60
    window_seconds: tuple[float, float] = (3.0, 8.0)  # one crop length per batch
    fixture_share: float = 0.35  # share of examples cut from real recordings (the rest: TTS)
    label_smoothing: float = 0.1  # a dozen real recordings: keep the net from becoming certain on them
    threads: int = 2

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass(frozen=True)
class Example:
    audio: np.ndarray  # [n] float32 16 kHz
    label: int  # 1 = degraded
    kind: str  # "clean", "clean_mild" or a degradation kind
    source: str


@dataclass
class EvalReport:
    accuracy: float
    balanced_accuracy: float
    confusion: list[list[int]]  # rows true (clean, degraded), columns predicted (clean, degraded)
    per_kind: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (correct, total)
    per_family: dict[str, tuple[int, int]] = field(default_factory=dict)  # "fixture" / "tts" -> (ok, total)


def crop(audio: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    if len(audio) <= n:
        return audio
    start = int(rng.integers(0, len(audio) - n + 1))
    return audio[start: start + n]


def make_example(clip: CleanClip, kind: str, table: dict[str, Degradation], rng: np.random.Generator,
                 seconds: float | None = None) -> Example:
    """`seconds` None = the whole clip (held-out evaluation; "clean" stays untouched), else a varied crop
    (training). Everything but the untouched clip gets a random level."""
    label = int(kind not in CLEAN_KINDS)
    if seconds is None and kind == "clean":
        return Example(clip.audio.astype(np.float32), label, kind, clip.source)
    audio = clip.audio if seconds is None else crop(vary_recording(clip.audio, rng), seconds, rng)
    if kind != "clean":
        audio = mild_clean(audio, rng) if kind == "clean_mild" else table[kind](audio, rng)
    return Example(random_level(audio, rng), label, kind, clip.source)


def sample_batch(groups: Sequence[Sequence[CleanClip]], table: dict[str, Degradation], step: int,
                 config: TrainConfig) -> list[Example]:
    """Half clean (mostly with harmless changes), half degraded with a uniformly drawn kind."""
    rng = np.random.default_rng([config.seed, 2, step])
    seconds = rng.uniform(*config.window_seconds)
    batch = []
    for _ in range(config.batch_size):
        group = groups[0] if len(groups) == 1 or rng.random() < config.fixture_share else groups[1]
        clip = group[int(rng.integers(len(group)))]
        if rng.random() < 0.5:
            kind = str(rng.choice(KINDS))
        else:
            kind = "clean" if rng.random() < 0.3 else "clean_mild"
        batch.append(make_example(clip, kind, table, rng, seconds))
    return batch


def source_groups(clips: Sequence[CleanClip]) -> list[list[CleanClip]]:
    """[fixtures, tts] (either may be absent)."""
    fixtures = [c for c in clips if c.source.startswith("fixture:")]
    others = [c for c in clips if not c.source.startswith("fixture:")]
    return [g for g in (fixtures, others) if g]


def lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 %."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.total_steps - config.warmup_steps)
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_step(model: AudioQualityClassifier, optimizer: torch.optim.Optimizer, batch: list[Example],
               config: TrainConfig) -> float:
    features, mask = log_mel([e.audio for e in batch])  # [B, T, 80], [B, T]
    labels = torch.tensor([e.label for e in batch])  # [B]
    loss = F.cross_entropy(model(features, mask), labels, label_smoothing=config.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return float(loss.detach())


def train(clips: Sequence[CleanClip], config: TrainConfig, log: Callable[[str], None] = print,
          epoch_end: Callable[[int, AudioQualityClassifier], None] | None = None) -> AudioQualityClassifier:
    """Returns the weight average (EMA, BatchNorm statistics included) in eval mode. `epoch_end(epoch,
    model)` may look at that average after each epoch."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = AudioQualityClassifier(RouterConfig()).train()
    average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    table, groups = degradation_table([c.audio for c in clips]), source_groups(clips)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    started, running = time.perf_counter(), []
    for step in range(config.total_steps):
        running.append(train_step(model, optimizer, sample_batch(groups, table, step, config), config))
        schedule.step()
        average.update_parameters(model)
        if (step + 1) % 50 == 0 or step + 1 == config.total_steps:
            log(f"step {step + 1}/{config.total_steps} epoch {step // config.steps_per_epoch + 1} "
                f"loss {np.mean(running):.4f} lr {schedule.get_last_lr()[0]:.2e} "
                f"({time.perf_counter() - started:.0f} s)")
            running = []
        if epoch_end is not None and (step + 1) % config.steps_per_epoch == 0:
            epoch_end((step + 1) // config.steps_per_epoch, average.module.eval())
    for kept, live in zip(average.module.buffers(), model.buffers()):
        if not kept.is_floating_point():
            kept.copy_(live)  # BatchNorm's step counters are counts, not weights to average
    return average.module.eval()


def held_out_examples(clips: Sequence[CleanClip], seed: int) -> list[Example]:
    """Each held-out clip whole: untouched, with harmless changes, and once per degradation kind (babble and
    the second speaker come from other held-out clips)."""
    table = degradation_table([c.audio for c in clips])
    kinds = CLEAN_KINDS + KINDS
    return [make_example(clip, kind, table, np.random.default_rng([seed, 3, i, k]))
            for i, clip in enumerate(clips) for k, kind in enumerate(kinds)]


def evaluate(model: AudioQualityClassifier, examples: Sequence[Example],
             threshold: float = 0.5) -> EvalReport:
    scores = RouterScorer(model).score([e.audio for e in examples])
    confusion = [[0, 0], [0, 0]]
    per_kind: dict[str, list[int]] = {}
    per_family: dict[str, list[int]] = {}
    for example, score in zip(examples, scores):
        predicted = int(score >= threshold)
        confusion[example.label][predicted] += 1
        family = example.source.split(":")[0]
        for tally, key in ((per_kind, example.kind), (per_family, family)):
            tally.setdefault(key, [0, 0])
            tally[key][0] += int(predicted == example.label)
            tally[key][1] += 1
    recalls = [confusion[c][c] / max(1, sum(confusion[c])) for c in (0, 1)]
    return EvalReport(accuracy=(confusion[0][0] + confusion[1][1]) / max(1, len(examples)),
                      balanced_accuracy=float(np.mean(recalls)), confusion=confusion,
                      per_kind={k: (v[0], v[1]) for k, v in per_kind.items()},
                      per_family={k: (v[0], v[1]) for k, v in per_family.items()})
