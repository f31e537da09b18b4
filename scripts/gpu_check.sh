#!/usr/bin/env bash
# The prepared GPU check (issue 10): on a machine with one NVIDIA GPU, CUDA torch and transformers
# preinstalled and no package registry, in well under 10 minutes:
#   1. installs the service's other dependencies from the wheels in .whl/ (scripts/gpu_wheels.sh fetched
#      them; the device call carries `.whl`), only when they are missing;
#   2. runs the GPU tests (pytest -m gpu: device/dtype selection on CUDA, Qwen3-ASR tiny in bf16 batched ==
#      alone and close to fp32, the mixed-route LoRA gate on CUDA) and the device/bf16 unit tests;
#   3. measures the full-size step costs (prefill, decode steps at batch 1/8/16) in the dtype auto picks;
#   4. runs the full-size benchmark (bench.run --profiles qwen-full: service at c=1 and c=16 against the
#      sequential and ideal baselines) and prints its table and checks.
# Figures go to $OUT (the device tool's return folder) or results/gpu. Without CUDA it is a dry run: the GPU
# tests skip and the benchmark runs the small dimensions (GPU_CHECK_DIMS=small), to check the plumbing.
# Usage: scripts/gpu_check.sh   (or `make gpu-check`); PYTHON=... to pick the interpreter.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
RESULTS="${OUT:-results/gpu}"
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
if ! "$PY" -c "import fastapi, uvicorn, pydantic_settings, soundfile, soxr, silero_vad" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/mega-asr-site \
    .whl/*.whl || { echo "gpu_check: cannot install the wheels in .whl/ (run scripts/gpu_wheels.sh)"; exit 2; }
  export PYTHONPATH="/tmp/mega-asr-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))")
DIMS="${GPU_CHECK_DIMS:-$([ "$CUDA" = 1 ] && echo real || echo small)}"
"$PY" - <<'PY'
import platform, torch, transformers
from models.device import resolve_placement
print(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}")
print(f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none (dry run)'}")
placement = resolve_placement()
print(f"auto placement: {placement.device_name} {placement.dtype_name} ({placement.reason})")
PY
status=0
step() {  # step NAME SECONDS COMMAND...: run with a deadline, keep going, remember a failure
  local name=$1 seconds=$2; shift 2
  echo "=== $name (at most ${seconds} s)"
  local started=$SECONDS
  timeout "$seconds" "$@" || { echo "=== $name FAILED (exit $?)"; status=1; }
  echo "=== $name took $((SECONDS - started)) s"
}
step "GPU tests" 150 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -rs --timeout=120 -m "gpu or not slow" \
  tests/models/test_cuda.py tests/models/test_device.py tests/models/qwen3_asr/test_bf16.py
step "full-size step costs" 120 "$PY" -m bench.full_size --dims "$DIMS" --out "$RESULTS/step_costs.json"
step "full-size benchmark" 330 "$PY" -m bench.run --profiles qwen-full --full-dims "$DIMS" \
  --full-concurrency 1,16 --full-requests "${GPU_CHECK_REQUESTS:-8,64}" --full-clips "${GPU_CHECK_CLIPS:-32}" \
  --out "$RESULTS"
exit $status
