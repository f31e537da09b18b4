"""app/audio/vad.py: loading silero_vad leaves torch's CPU thread count as it was."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROBE = textwrap.dedent("""
    import threading, numpy as np, torch
    from app.audio.vad import speech_timestamps

    before = torch.get_num_threads()
    speech_timestamps(np.zeros(16000, np.float32))  # the first use imports silero_vad on this thread
    later = []
    thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))  # a thread started after
    thread.start()
    thread.join()
    print(before, torch.get_num_threads(), later[0])
""")


def test_loading_silero_keeps_torch_thread_count():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, check=True)
    before, after, later = map(int, done.stdout.split())
    assert before >= 1 and after == before and later == before
