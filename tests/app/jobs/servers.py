"""Waiting on a job served by a real server process (bench.job_servers), for the slow job suites."""

from __future__ import annotations

from bench import job_servers as processes
from tests.server import poll


def wait_completed(server: processes.Server, job_id: str, timeout: float = 300) -> dict:
    """Poll the job until it ends; it must have completed. Returns its last job object."""
    state: dict = {}
    poll(lambda: state.update(processes.job(server.base, job_id)) or state["status"] in ("completed", "failed"),
         timeout, f"job {job_id} did not finish")
    assert state["status"] == "completed", state
    return state
