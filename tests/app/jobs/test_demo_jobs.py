"""Jobs on the demo profile (real Whisper tiny.en / base), served by a real `mega-asr-server serve` process:
- a job's transcript is byte for byte the synchronous endpoint's answer for the same audio and fields, in
  every response format, word times included;
- a 2-hour recording (the English fixtures spread over two hours of silence, FLAC) completes, its
  transcript holds every fixture's words at the fixture's place, and the server's peak memory while it runs
  stays within PEAK_BOUND_MB of its idle memory (holding the decoded recording alone would take 461 MB).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from app.audio.decoding import decode_audio
from app.evaluation.scoring import corpus_rate, count_errors
from bench import job_servers as processes
from tests.app.jobs.servers import wait_completed

pytestmark = pytest.mark.slow
PEAK_BOUND_MB = 150
TWO_HOURS = 7200.0
RATE = 16_000


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo-jobs")
    database = f"sqlite+aiosqlite:///{tmp / 'jobs.sqlite3'}"
    with processes.servers(database, tmp, 1, MEGA_ASR_PROFILE="demo", MEGA_ASR_MAX_BATCH_ITEMS="8") as (server,):
        yield server


def english_fixtures() -> list[tuple[np.ndarray, str]]:
    rows = [line.split("\t") for line in (processes.FIXTURES / "MANIFEST.tsv").read_text().splitlines()[1:]]
    return [(decode_audio((processes.FIXTURES / path).read_bytes(), max_seconds=120).samples, reference)
            for path, language, reference in rows if language == "en"]


def test_a_jobs_transcript_is_the_synchronous_answer_in_every_format(demo):
    audio = processes.fixture_speech(150, seed=3)
    fields = {"language": "en", "timestamp_granularities[]": "segment"}
    job = processes.submit(demo.base, audio, **fields)
    wait_completed(demo, job["id"], 600)
    for response_format in ("json", "text", "srt", "vtt", "verbose_json"):
        sync = httpx.post(demo.base + "/v1/audio/transcriptions", files={"file": ("a.wav", audio)},
                          data={**fields, "response_format": response_format}, timeout=600)
        got = httpx.get(f"{demo.base}{processes.JOBS}/{job['id']}/transcript",
                        params={"response_format": response_format}, timeout=60)
        assert sync.status_code == got.status_code == 200
        assert got.content == sync.content, response_format
    assert len(httpx.get(f"{demo.base}{processes.JOBS}/{job['id']}/transcript",
                         params={"response_format": "verbose_json"}).json()["segments"]) >= 5


def test_a_jobs_word_times_are_the_synchronous_answers(demo):
    """Cross-attention times corrected by silero's speech runs, computed per segment on both paths."""
    audio = processes.fixture_speech(60, seed=4)
    fields = {"language": "en", "timestamp_granularities[]": "word", "response_format": "verbose_json"}
    job = processes.submit(demo.base, audio, **fields)
    wait_completed(demo, job["id"], 600)
    sync = httpx.post(demo.base + "/v1/audio/transcriptions", files={"file": ("a.wav", audio)}, data=fields,
                      timeout=600)
    got = httpx.get(f"{demo.base}{processes.JOBS}/{job['id']}/transcript",
                    params={"response_format": "verbose_json"}, timeout=60)
    assert sync.status_code == got.status_code == 200
    assert got.content == sync.content
    words = got.json()["words"]
    assert len(words) >= 10 and all(a["start"] <= b["start"] for a, b in itertools.pairwise(words))


def two_hour_flac(path: Path, clips: list[np.ndarray]) -> list[tuple[float, float]]:
    """Write the recording block by block (never whole in memory); returns each clip's (start, end) s."""
    spacing = int(TWO_HOURS * RATE) // len(clips)
    spans = []
    with sf.SoundFile(path, "w", RATE, 1, format="FLAC") as out:
        for index, clip in enumerate(clips):
            lead = (spacing - len(clip)) // 2
            out.write(np.zeros(lead, np.float32))
            out.write(clip)
            out.write(np.zeros(spacing - lead - len(clip), np.float32))
            start = index * spacing + lead
            spans.append((start / RATE, (start + len(clip)) / RATE))
    return spans


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


def test_a_two_hour_recording_completes_with_every_fixtures_words_in_place_and_bounded_memory(demo, tmp_path):
    fixtures = english_fixtures()
    path = tmp_path / "two-hours.flac"
    spans = two_hour_flac(path, [clip for clip, _ in fixtures])
    idle = rss_mb(demo.pid)
    Path(f"/proc/{demo.pid}/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    with path.open("rb") as upload:
        answer = httpx.post(demo.base + processes.JOBS, files={"file": ("two-hours.flac", upload, "audio/flac")},
                            data={"language": "en"}, timeout=600)
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["progress"]["audio_seconds_total"] == pytest.approx(TWO_HOURS, abs=1)
    state = wait_completed(demo, job["id"], 1500)
    peak = peak_rss_mb(demo.pid)
    assert state["duration"] == pytest.approx(TWO_HOURS, abs=0.01)
    print(f"2-hour job: idle RSS {idle:.0f} MB, peak {peak:.0f} MB (+{peak - idle:.0f} MB)")
    assert peak - idle < PEAK_BOUND_MB
    segments = httpx.get(f"{demo.base}{processes.JOBS}/{job['id']}/transcript",
                         params={"response_format": "verbose_json"}, timeout=60).json()["segments"]
    spoken = [s for s in segments if s["text"]]
    texts = []
    for start, end in spans:  # each fixture's words, at its place in the recording
        texts.append(" ".join(s["text"] for s in spoken if s["start"] < end and s["end"] > start))
        assert texts[-1], f"no text for the fixture at {start:.0f} s"
    assert all(any(s["start"] < end and s["end"] > start for start, end in spans) for s in spoken), \
        "text where there is only silence"
    error_rate = corpus_rate(count_errors(reference, text, "en") for (_, reference), text in zip(fixtures, texts))
    assert error_rate < 0.35, error_rate  # the demo's clean-speech WER is ~24 %
