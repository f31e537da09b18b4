"""What the benchmark ran on, and how busy the machine was with other work while it ran."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_STAT = Path("/proc/stat")


def machine_description() -> str:
    """e.g. 'x86_64, AMD EPYC, 2 cores (AVX2; no native bf16), Linux-...'. GPU named when there is one."""
    import torch

    from models.device import cpu_bf16_instructions

    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    native = cpu_bf16_instructions()
    cpu = (f"{capabilities.get('cpu_name', platform.processor() or 'CPU')}, {os.cpu_count()} cores "
           f"({torch.backends.cpu.get_cpu_capability()}; "
           f"{'native bf16: ' + ', '.join(native) if native else 'no native bf16'})")
    gpu = f", GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{platform.machine()}, {cpu}{gpu}, {platform.platform()}"


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (None where /proc/stat is missing)."""
    if not _STAT.is_file():
        return None
    fields = [int(v) for v in _STAT.read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


@dataclass
class CpuShare:
    wall_seconds: float = 0.0
    others_share: float = float("nan")  # of the machine's CPU capacity, used by other processes


@contextlib.contextmanager
def cpu_meter() -> Iterator[CpuShare]:
    """Measures the share of the machine's CPU capacity that *other* processes used during the block: on a
    shared machine, figures measured while it is high are slowed by contention and say so."""
    share = CpuShare()
    wall0, busy0, own0 = time.perf_counter(), _busy_cpu_seconds(), _own_cpu_seconds()
    try:
        yield share
    finally:
        share.wall_seconds = time.perf_counter() - wall0
        busy1 = _busy_cpu_seconds()
        if busy0 is not None and busy1 is not None and share.wall_seconds > 0:
            others = (busy1 - busy0) - (_own_cpu_seconds() - own0)
            share.others_share = max(0.0, others) / (share.wall_seconds * (os.cpu_count() or 1))
