"""The threads that run torch, and how many CPU threads each may use.

One thread runs every model call: loading, warm-up, routing, prefill and decode steps. Every thread that
runs torch's parallel CPU kernels keeps its own OpenMP team (worker threads that live as long as it does),
and once libgomp manages more threads than there are CPUs it stops spin-waiting between kernels (its
throttled spin count), so every kernel pays a futex wake-up. Models loaded on one thread and run on another
leave two teams: measured on 2 AVX2 cores, a small kernel (exp of 200 k floats) took 1.5x as long and a
Whisper tiny.en call on a 3 s clip 1.17x. So the models are loaded on the thread that runs them
(app/main.py).

The audio threads (decoding, the speech gate's silero steps) run torch on one thread each, so they start no
team. Each thread fixes its own count when it starts: torch gives a thread the process-wide count at its
first parallel kernel, which any code may change: silero_vad's import sets it to 1
(`torch.set_num_threads(1)` in silero_vad/model.py; app/audio/vad.py now puts it back), and a model thread
started after the first gated request ran on one thread (1.5-1.7x slower per Whisper call, measured).
torch has no per-thread setter: fixing a thread's count sets the process-wide one too (the audio threads
leave it at 1), so every thread that runs a model fixes its own (here, and bench/model_thread.py).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import os
from pathlib import Path


def cpu_threads(configured: int = 0, cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """`configured`; with 0, OMP_NUM_THREADS where set (torch's own convention), else the CPUs this process
    may run on, capped by its cgroup's CPU quota (a Kubernetes CPU limit: more threads than the quota only
    get throttled)."""
    if configured:
        return configured
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    cpus = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        quota, period = cgroup.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    return cpus


def pin_torch_threads(count: int) -> None:
    """This thread's torch CPU threads, fixed now and kept whatever the process-wide count becomes."""
    import torch

    torch.get_num_threads()  # torch's per-thread set-up first: it applies the process-wide count, maybe changed
    torch.set_num_threads(count)


def inference_executor(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    """The single model thread, with `threads` CPU threads for its kernels."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference",
                                                 initializer=pin_torch_threads, initargs=(threads,))


def audio_executor(workers: int) -> concurrent.futures.ThreadPoolExecutor:
    """Threads for audio work (decoding, speech gate), each running torch on one CPU thread."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode",
                                                 initializer=pin_torch_threads, initargs=(1,))
