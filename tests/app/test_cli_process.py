"""The real `mega-asr-server serve` process: refuses to run without its models; drains on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from models.device import cpu_bf16_instructions, resolve_placement
from tests.server import free_port, poll

ROOT = Path(__file__).resolve().parents[2]


def spawn(env_overrides: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, "MEGA_ASR_HOST": "127.0.0.1", **env_overrides}
    return subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_missing_production_weights_stop_the_service(tmp_path):
    process = spawn({"MEGA_ASR_PROFILE": "production", "MEGA_ASR_MODEL_DIR": str(tmp_path / "nothing"),
                     "MEGA_ASR_PORT": str(free_port())})
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1, output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any("not a Mega-ASR checkpoint directory" in line.get("error", "") + line["message"] for line in lines)


@pytest.mark.skipif(bool(cpu_bf16_instructions()), reason="this CPU has native bf16")
def test_bf16_on_a_cpu_without_native_bf16_stops_the_service():
    process = spawn({"MEGA_ASR_PROFILE": "tests", "MEGA_ASR_DEVICE": "cpu", "MEGA_ASR_DTYPE": "bfloat16",
                     "MEGA_ASR_PORT": str(free_port())})
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1, output
    assert "no native bf16 matrix instructions" in output


@pytest.mark.slow
def test_tests_profile_serves_and_drains_on_sigterm():
    port = free_port()
    process = spawn({"MEGA_ASR_PROFILE": "tests", "MEGA_ASR_PORT": str(port), "MEGA_ASR_DRAIN_SECONDS": "20"})
    base = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: httpx.get(f"{base}/readyz").status_code == 200, 240, "tests profile never became ready")
        speech = (ROOT / "tests" / "fixtures" / "audio" / "human" / "goforward.wav").read_bytes()
        answer = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("a.wav", speech)},
                            data={"response_format": "verbose_json"}, timeout=120)
        assert answer.status_code == 200 and answer.json()["route"] in ("base", "robust")
        expected = resolve_placement()
        card = httpx.get(f"{base}/v1/models").json()["data"][0]
        assert (card["device"], card["dtype"]) == (expected.device_name, expected.dtype_name)
        info = (f'asr_model_info{{device="{expected.device_name}",dtype="{expected.dtype_name}",'
                f'dtype_reason="{expected.reason}",profile="tests"}} 1.0')
        assert card["dtype_reason"] == expected.reason
        assert info in httpx.get(f"{base}/metrics").text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        ready = [line for line in process.stdout.read().splitlines() if '"ready: ' in line]
        assert ready and f"device={expected.device_name} dtype={expected.dtype_name}" in ready[0]
    finally:
        if process.poll() is None:
            process.kill()
