"""In-process model work of the benchmark (loading, baselines) on a short-lived thread.

The service runs its models on its own inference thread (app/engine/inference_thread.py). A thread that
runs torch's parallel CPU kernels keeps an OpenMP team for as long as it lives, and a second team makes
libgomp stop spin-waiting between kernels (each kernel then pays a wake-up). The benchmark's main thread
would keep such a team while the service runs and slow the service down as no deployment is slowed; work
done on a thread that has exited leaves no team behind. The thread fixes its CPU threads as the service's
model thread does (silero_vad's import sets the process-wide count to 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from app.engine.inference_thread import cpu_threads, inference_executor

T = TypeVar("T")


def off_main_thread(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """`fn(*args, **kwargs)` on a new thread, which has ended (with its OpenMP team) when this returns."""
    with inference_executor(cpu_threads()) as pool:  # the service's kind of model thread, for one call
        return pool.submit(fn, *args, **kwargs).result()
