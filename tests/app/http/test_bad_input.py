"""The bad-input table, through the real HTTP server: each case gets its status and a clear message, and
the service keeps answering normal requests afterwards."""

from __future__ import annotations

import io
import socket
import struct

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.fakes import tone
from tests.server import wav_bytes

RATE = 16_000


def riff(chunks: list[tuple[bytes, bytes]], declared_size: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(cid + struct.pack("<I", len(data)) + data for cid, data in chunks)
    return b"RIFF" + struct.pack("<I", declared_size if declared_size is not None else len(body)) + body


FMT_PCM16 = b"fmt " , struct.pack("<HHIIHH", 1, 1, RATE, RATE * 2, 2, 16)


def data_chunk_claiming(claimed: int, actual: bytes) -> bytes:
    return b"data" + struct.pack("<I", claimed) + actual


def encoded(samples: np.ndarray, rate: int, fmt: str, subtype: str | None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def float_wav_with_nan() -> bytes:
    samples = tone(1.0)
    samples[100] = np.nan
    return encoded(samples, RATE, "WAV", "FLOAT")


pcm = (tone(1.0) * 32767).astype("<i2").tobytes()
BAD_CASES = [
    # (name, bytes, expected status, expected error code)
    ("text", b"this is not audio at all, just words\n" * 5, 415, "unsupported_media_type"),
    ("png", b"\x89PNG\r\n\x1a\n" + bytes(200), 415, "unsupported_media_type"),
    ("json", b'{"audio": "nope"}', 415, "unsupported_media_type"),
    ("random binary", np.random.default_rng(0).bytes(4000), 400, "invalid_audio"),
    ("garbage chunk ids", riff([(b"JUNK", b"x" * 8), (b"ABCD", b"y" * 64)]), 400, "invalid_audio"),
    ("zero-length data chunk", riff([FMT_PCM16, (b"data", b"")]), 400, "empty_audio"),
    ("header claims more than exists",
     b"RIFF" + struct.pack("<I", 10_000_000) + b"WAVE" + FMT_PCM16[0] + struct.pack("<I", 16) + FMT_PCM16[1]
     + data_chunk_claiming(9_000_000, pcm[:200]), 400, None),
    ("truncated flac", encoded(tone(2.0), RATE, "FLAC", None)[:300], 400, "invalid_audio"),
    ("nan samples", float_wav_with_nan(), 400, "invalid_audio"),
]


@pytest.mark.parametrize("name,data,status,code", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_uploads(fake_service, name, data, status, code):
    base, _ = fake_service()
    answer = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("upload.bin", data)}, timeout=60)
    if name == "header claims more than exists":
        # libsndfile reads the samples that exist; either a transcript of those or a clear 400
        assert answer.status_code in (200, 400), answer.text
    else:
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["code"] == code
        assert answer.json()["error"]["message"]
    assert httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("ok.wav", wav_bytes(tone(1.0)))}).status_code == 200


def test_too_long_audio_and_declared_huge_upload(fake_service):
    base, _ = fake_service(max_audio_seconds=10.0, max_upload_bytes=2_000_000)
    long = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("l.wav", wav_bytes(tone(12.0)))})
    assert long.status_code == 413 and long.json()["error"]["code"] == "audio_too_long"
    # a client that declares 1 GB is refused before the body is read (raw socket: httpx won't lie)
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1073741824\r\n\r\n--x\r\n")
        status_line = conn.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 413"), status_line
    # and one that streams more than the limit without declaring it is cut off with 413 too
    def chunks():
        yield b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
        for _ in range(40):
            yield b"\0" * 100_000
    streamed = httpx.post(f"{base}/v1/audio/transcriptions", content=chunks(),
                          headers={"content-type": "multipart/form-data; boundary=x"})
    assert streamed.status_code == 413


def test_empty_body_and_empty_file(fake_service):
    base, _ = fake_service()
    assert httpx.post(f"{base}/v1/audio/transcriptions").status_code == 415
    empty = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("e.wav", b"")})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "file"


GOOD_VARIANTS = [(rate, channels, subtype) for rate, channels, subtype in [
    (8000, 1, "PCM_16"), (11025, 2, "PCM_U8"), (22050, 1, "PCM_24"), (44100, 2, "PCM_32"), (48000, 6, "FLOAT"),
    (96000, 8, "DOUBLE"), (192000, 1, "PCM_16"), (16000, 3, "PCM_16")]]


@pytest.mark.parametrize("rate,channels,subtype", GOOD_VARIANTS)
def test_rates_channels_and_sample_formats(fake_service, rate, channels, subtype):
    base, _ = fake_service()
    t = np.arange(int(1.5 * rate)) / rate
    mono = 0.3 * np.sin(2 * np.pi * 300 * t)
    data = encoded(np.stack([mono] * channels, axis=1), rate, "WAV", subtype)
    answer = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("v.wav", data)}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert abs(answer.json()["duration"] - 1.5) < 0.02


@pytest.mark.parametrize("fmt,subtype", [("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III"), ("FLAC", "PCM_16")])
def test_compressed_formats_libsndfile_reads(fake_service, fmt, subtype):
    base, _ = fake_service()
    data = encoded(0.3 * np.sin(2 * np.pi * 300 * np.arange(44100 * 2) / 44100), 44100, fmt, subtype)
    answer = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("a", data)}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert abs(answer.json()["duration"] - 2.0) < 0.1


@pytest.mark.parametrize("container,codec", [("mp4", "aac"), ("webm", "libopus")])
def test_formats_only_pyav_reads(fake_service, container, codec):
    import av

    base, _ = fake_service()
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=48000)
        stream.layout = "mono"
        samples = (0.3 * np.sin(2 * np.pi * 300 * np.arange(48000 * 2) / 48000)).astype(np.float32)
        frame_format = stream.codec_context.format.name
        for start in range(0, len(samples), 960):
            chunk = samples[start:start + 960][None, :]
            if not frame_format.startswith("flt"):
                chunk = (chunk * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(chunk, format=frame_format, layout="mono")
            frame.sample_rate = 48000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    answer = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": (f"a.{container}", buffer.getvalue())},
                        timeout=60)
    assert answer.status_code == 200, answer.text
    assert abs(answer.json()["duration"] - 2.0) < 0.1


def test_tiny_and_silent_audio(fake_service):
    base, _ = fake_service()
    blip = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("b.wav", wav_bytes(tone(0.005)))})
    assert blip.status_code == 200
    silent = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("s.wav", wav_bytes(np.zeros(48000, np.float32)))})
    assert silent.status_code == 200 and silent.json()["text"] == "" and silent.json()["no_speech"]
