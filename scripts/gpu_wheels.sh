#!/usr/bin/env bash
# Download (here, where the registry is reachable) the wheels that scripts/gpu_check.sh installs on a GPU
# machine that has CUDA torch, transformers, numpy, httpx, prometheus-client and pytest but no registry:
# the service's other dependencies, for CPython 3.12 on manylinux x86_64, into .whl/ (ignored through
# .git/info/exclude). The device call names `.whl` in `carry` so they travel with the working tree (~6 MB).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Versions as this project's CI venv resolves them; --no-deps: every need is listed.
WHEELS=(
  fastapi==0.165.0 starlette==1.10.0 annotated-doc==0.0.7 anyio==4.16.0 opentelemetry-api==1.45.2
  pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4
  typing-inspection==0.4.5 annotated-types==0.8.0 typing-extensions==4.16.0
  uvicorn==0.54.0 h11==0.16.0 python-multipart==0.0.34
  soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 soxr==1.1.0
  silero-vad==6.2.3 packaging==26.4
)
exclude="$(git rev-parse --git-common-dir)/info/exclude"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
rm -rf .whl
mkdir -p .whl
"${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "${WHEELS[@]}"
ls .whl
du -sh .whl
