"""Degradations for router training, pure numpy/scipy (+ soxr for the 8 kHz telephone leg and speed).

Every degradation is `(audio, rng) -> audio`: float32 16 kHz mono in, same length out, finite, and
deterministic for a given `np.random.Generator` state. The ones that need other speech (babble, a second
speaker) take a `pool` bound with `functools.partial` by `degradation_table`.

The label-independent changes live here too (`vary_recording`, `mild_clean`, `random_level`): variety that
both classes get, so that voice, microphone, bandwidth up to 8 kHz, rumble and loudness carry no label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
from scipy import signal

SAMPLE_RATE = 16_000
Degradation = Callable[[np.ndarray, np.random.Generator], np.ndarray]

# Kinds with one parameter family each; "combination" chains 2-3 of them.
SINGLE_KINDS = ("white_noise", "colored_noise", "babble", "reverb", "clipping", "band_limit", "telephone",
                "frequency_dropout", "packet_dropout", "overlap")
KINDS = SINGLE_KINDS + ("combination",)
# Physical order when chaining: the room, other talkers and noise reach the microphone before the channel.
CHAIN_ORDER = ("reverb", "overlap", "babble", "white_noise", "colored_noise", "frequency_dropout",
               "band_limit", "telephone", "clipping", "packet_dropout")
NOISE_SNR_DB = (-5.0, 10.0)
CLEAN_NOISE_SNR_DB = (30.0, 50.0)


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))) + 1e-12)


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """SNR of `noisy` against the clean signal it was made from (used by the tests)."""
    return 20.0 * np.log10(rms(clean) / rms(noisy - clean))


def fit_length(audio: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Tile (from a random offset) or crop `audio` to exactly n samples."""
    reps = int(np.ceil((n + len(audio)) / len(audio)))
    start = int(rng.integers(0, len(audio)))
    return np.tile(audio, reps)[start: start + n]


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, target_snr_db: float) -> np.ndarray:
    scale = rms(speech) / (rms(noise) * 10.0 ** (target_snr_db / 20.0))
    return (speech + scale * noise).astype(np.float32)


def colored_noise(n: int, rng: np.random.Generator, exponent: float,
                  band: tuple[float, float] = (80.0, 8000.0)) -> np.ndarray:
    """Unit-RMS noise with power ∝ 1/f^exponent (0 white, 1 pink, 2 brown) inside `band`. The default band
    starts at 80 Hz: rumble below speech would otherwise carry most of a brown noise's power while barely
    touching ASR, and "10 dB SNR" would mean a harmless hum."""
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    shaped = spectrum / np.maximum(freqs, band[0]) ** (exponent / 2.0)
    shaped[(freqs < band[0]) | (freqs > band[1])] = 0.0
    noise = np.fft.irfft(shaped, n)
    return (noise / rms(noise)).astype(np.float32)


def white_noise(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise at -5..10 dB SNR."""
    noise = rng.standard_normal(len(audio)).astype(np.float32)
    return mix_at_snr(audio, noise, rng.uniform(*NOISE_SNR_DB))


def pink_or_brown_noise(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pink (1/f) or brown (1/f²) noise at -5..10 dB SNR."""
    exponent = float(rng.choice([1.0, 2.0]))
    return mix_at_snr(audio, colored_noise(len(audio), rng, exponent), rng.uniform(*NOISE_SNR_DB))


def babble_noise(audio: np.ndarray, rng: np.random.Generator, pool: Sequence[np.ndarray]) -> np.ndarray:
    """3-6 other talkers summed at equal level, then mixed at -5..10 dB."""
    talkers = [fit_length(pool[i], len(audio), rng) for i in rng.choice(len(pool), int(rng.integers(3, 7)))]
    babble = np.sum([t / rms(t) for t in talkers], axis=0)
    return mix_at_snr(audio, babble, rng.uniform(*NOISE_SNR_DB))


def second_speaker(audio: np.ndarray, rng: np.random.Generator, pool: Sequence[np.ndarray]) -> np.ndarray:
    """One interfering talker at 0-6 dB below the target."""
    other = fit_length(pool[int(rng.integers(len(pool)))], len(audio), rng)
    return mix_at_snr(audio, other, rng.uniform(0.0, 6.0))


def exponential_rir(rng: np.random.Generator, rt60: float, drr_db: float) -> np.ndarray:
    """Direct path + exponentially decaying noise tail (60 dB down at rt60), far-field when drr_db < 0."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    tail[: int(rng.uniform(0.002, 0.01) * SAMPLE_RATE)] = 0.0  # pre-delay before the first reflections
    tail *= 10.0 ** (-drr_db / 20.0) / np.sqrt(np.sum(tail ** 2))
    tail[0] = 1.0
    return tail


def reverb(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Far-field room: synthetic exponential RIR, RT60 0.4-1.2 s, direct-to-reverberant -6..+3 dB."""
    rir = exponential_rir(rng, rt60=rng.uniform(0.4, 1.2), drr_db=rng.uniform(-6.0, 3.0))
    wet = signal.fftconvolve(audio, rir)[: len(audio)]
    return (wet * rms(audio) / rms(wet)).astype(np.float32)


def hard_clip(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Overdriven input: the rails sit at 5-30 % of the original peak, then full scale."""
    level = float(np.max(np.abs(audio))) * rng.uniform(0.05, 0.3) + 1e-9
    return (np.clip(audio, -level, level) * (0.99 / level)).astype(np.float32)


def band_limit(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cheap-microphone / low-bitrate band: low-pass 1-3.5 kHz, high-pass 150-500 Hz."""
    band = [rng.uniform(150.0, 500.0), rng.uniform(1000.0, 3500.0)]
    sos = signal.butter(8, band, btype="bandpass", fs=SAMPLE_RATE, output="sos")
    return signal.sosfilt(sos, audio).astype(np.float32)


def mu_law_8bit(audio: np.ndarray) -> np.ndarray:
    """G.711-style µ-law round trip at 8 bits (input in [-1, 1])."""
    compressed = np.sign(audio) * np.log1p(255.0 * np.abs(audio)) / np.log(256.0)
    codes = np.round((compressed + 1.0) * 127.5)
    decoded = codes / 127.5 - 1.0
    return np.sign(decoded) * np.expm1(np.abs(decoded) * np.log(256.0)) / 255.0


def telephone(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """300-3400 Hz, down to 8 kHz, 8-bit µ-law, back up to 16 kHz."""
    import soxr

    sos = signal.butter(4, [300.0, 3400.0], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    narrow = signal.sosfilt(sos, audio)
    narrow = narrow * (rng.uniform(0.3, 0.9) / (np.max(np.abs(narrow)) + 1e-9))  # the line's AGC level
    coded = mu_law_8bit(soxr.resample(narrow, SAMPLE_RATE, 8000))
    wide = soxr.resample(coded, 8000, SAMPLE_RATE)
    return np.pad(wide, (0, max(0, len(audio) - len(wide))))[: len(audio)].astype(np.float32)


def frequency_dropout(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Notch out 3-6 random bands of 200-800 Hz between 200 Hz and 7 kHz."""
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(len(audio), 1.0 / SAMPLE_RATE)
    for _ in range(int(rng.integers(3, 7))):
        low = rng.uniform(200.0, 6500.0)
        spectrum[(freqs >= low) & (freqs < low + rng.uniform(200.0, 800.0))] = 0.0
    return np.fft.irfft(spectrum, len(audio)).astype(np.float32)


def packet_dropout(audio: np.ndarray, rng: np.random.Generator, coverage: float | None = None) -> np.ndarray:
    """Zero whole 20-60 ms packets until 10-30 % (or `coverage`) of the clip is gone."""
    packet = int(rng.uniform(0.02, 0.06) * SAMPLE_RATE)
    slots = max(1, len(audio) // packet)
    share = rng.uniform(0.1, 0.3) if coverage is None else coverage
    lost = rng.choice(slots, size=max(1, round(share * slots)), replace=False)
    out = audio.astype(np.float32)  # a copy
    for slot in lost:
        out[slot * packet: (slot + 1) * packet] = 0.0
    return out


def combination(audio: np.ndarray, rng: np.random.Generator, table: dict[str, Degradation]) -> np.ndarray:
    """2-3 different single degradations applied in physical order."""
    chosen = set(rng.choice(SINGLE_KINDS, size=int(rng.integers(2, 4)), replace=False).tolist())
    for kind in (k for k in CHAIN_ORDER if k in chosen):
        audio = table[kind](audio, rng)
    return audio


def mild_clean(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A faint white or pink noise floor at 30-50 dB SNR for half of the clips (harmless)."""
    if rng.random() < 0.5:
        noise = colored_noise(len(audio), rng, float(rng.choice([0.0, 1.0])))
        audio = mix_at_snr(audio, noise, rng.uniform(*CLEAN_NOISE_SNR_DB))
    return audio.astype(np.float32)


def vary_recording(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label-independent variety, applied before any degradation: speed/pitch 0.85-1.18 (the TTS has a
    single voice), microphone coloration, dynamic range compression, content above 7.3 kHz or a gentle
    5-7.5 kHz low-pass (bandwidth up to 8 kHz or a dull codec is no label cue), sub-80 Hz rumble at 0-25 dB
    below the speech or a 60-150 Hz high-pass, and digital silence at the edges (some clean fixtures start
    with exact zeros)."""
    import soxr

    if rng.random() < 0.5:
        audio = soxr.resample(audio, SAMPLE_RATE * rng.uniform(0.85, 1.18), SAMPLE_RATE)
    if rng.random() < 0.5:
        audio = microphone_coloration(audio, rng)
    if rng.random() < 0.3:
        audio = compress_dynamics(audio, rng)
    if rng.random() < 0.35:
        audio = extend_bandwidth(audio, rng)
    elif rng.random() < 0.35:
        sos = signal.butter(4, rng.uniform(5000.0, 7500.0), btype="lowpass", fs=SAMPLE_RATE, output="sos")
        audio = signal.sosfilt(sos, audio)
    if rng.random() < 0.3:  # sub-80 Hz rumble (handling, HVAC, DC drift) or its removal: not a degradation
        rumble = colored_noise(len(audio), rng, 2.0, band=(5.0, 80.0))
        audio = mix_at_snr(audio, rumble, rng.uniform(0.0, 25.0))
    elif rng.random() < 0.2:
        audio = signal.sosfilt(signal.butter(2, rng.uniform(60.0, 150.0), btype="highpass", fs=SAMPLE_RATE,
                                             output="sos"), audio)
    audio = np.array(audio, dtype=np.float32)  # a copy
    if rng.random() < 0.3:
        audio[: int(rng.uniform(0.0, 0.3) * SAMPLE_RATE)] = 0.0
        audio[len(audio) - int(rng.uniform(0.0, 0.3) * SAMPLE_RATE):] = 0.0
    return audio


def _butter(order: int, corner: float | tuple[float, float], btype: str) -> np.ndarray:
    return signal.butter(order, corner, btype=btype, fs=SAMPLE_RATE, output="sos")


def extend_bandwidth(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label-independent: speech-correlated content above 7.3 kHz (the 4.3-6.3 kHz band shifted up by
    3 kHz, -9..0 dB re. the band below), as native 16 kHz captures have and soxr-resampled TTS lacks."""
    t = np.arange(len(audio)) / SAMPLE_RATE
    band = signal.sosfilt(_butter(6, (4300.0, 6300.0), "bandpass"), audio)
    top = signal.sosfilt(_butter(8, 7300.0, "highpass"), band * 2.0 * np.cos(2.0 * np.pi * 3000.0 * t))
    below = signal.sosfilt(_butter(6, (6300.0, 7300.0), "bandpass"), audio)
    gain = rms(below) / rms(top) * 10.0 ** (rng.uniform(-9.0, 0.0) / 20.0)
    return (audio + gain * top).astype(np.float32)


def compress_dynamics(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label-independent: a smooth compressor (ratio 2-8 above a threshold 6-20 dB under the loudest 20 ms),
    like broadcast processing or a phone's AGC. Even loudness is not clipping."""
    window = int(0.02 * SAMPLE_RATE)
    power = np.convolve(np.square(audio, dtype=np.float64), np.ones(window) / window, "same")
    envelope = np.sqrt(power) + 1e-9
    threshold = envelope.max() * 10.0 ** (-rng.uniform(6.0, 20.0) / 20.0)
    gain = np.minimum(1.0, (envelope / threshold) ** (1.0 / rng.uniform(2.0, 8.0) - 1.0))
    return (audio * gain).astype(np.float32)


def microphone_coloration(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label-independent: a gentle first-order shelf (low side -8..+8 dB, high side -12..+12 dB around
    0.5-3 kHz), as another microphone or voice gives. Dull or bright speech is not degraded; steep cut-offs
    are."""
    corner = rng.uniform(500.0, 3000.0)
    low = signal.sosfilt(signal.butter(1, corner, btype="lowpass", fs=SAMPLE_RATE, output="sos"), audio)
    gains = 10.0 ** (np.array([rng.uniform(-8.0, 8.0), rng.uniform(-12.0, 12.0)]) / 20.0)
    return (gains[0] * low + gains[1] * (audio - low)).astype(np.float32)


def random_level(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same loudness spread for both classes (RMS -34..-16 dBFS, peak kept <= 0.99), so loudness
    carries no label information."""
    out = audio * (10.0 ** (rng.uniform(-34.0, -16.0) / 20.0) / rms(audio))
    peak = float(np.max(np.abs(out)))
    return (out * (0.99 / peak if peak > 0.99 else 1.0)).astype(np.float32)


def degradation_table(pool: Sequence[np.ndarray]) -> dict[str, Degradation]:
    """Every kind in KINDS as an `(audio, rng) -> audio` function; `pool` = other clean speech."""
    if not pool:
        raise ValueError("babble and overlap need a non-empty pool of other clean speech")
    table: dict[str, Degradation] = {
        "white_noise": white_noise, "colored_noise": pink_or_brown_noise,
        "babble": partial(babble_noise, pool=pool), "reverb": reverb, "clipping": hard_clip,
        "band_limit": band_limit, "telephone": telephone, "frequency_dropout": frequency_dropout,
        "packet_dropout": packet_dropout, "overlap": partial(second_speaker, pool=pool),
    }
    table["combination"] = partial(combination, table=dict(table))
    return table
