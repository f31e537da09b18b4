"""A real Prometheus server (Debian's package) scrapes the live /metrics and sees per-route series."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest

from tests.app.http.test_routes import LOUD, QUIET, post
from tests.fakes import tone
from tests.server import free_port, poll

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="prometheus binary not installed (.ci/run installs it)")


def query(prometheus: str, expr: str) -> list[dict]:
    """The query's result; [] while Prometheus is still starting (connection refused, or 503 in plain text)."""
    try:
        answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr})
    except httpx.TransportError:
        return []
    if answer.status_code != 200:
        return []
    body = answer.json()
    return body["data"]["result"] if body.get("status") == "success" else []


def test_prometheus_scrapes_route_metrics(fake_service, tmp_path):
    base, _ = fake_service()
    post(base, tone(2.0, LOUD))
    post(base, tone(1.0, QUIET))
    target = base.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: mega-asr\n"
                      f"    static_configs:\n      - targets: ['{target}']\n")
    port = free_port()
    server = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                               f"--web.listen-address=127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prometheus = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: query(prometheus, 'up{job="mega-asr"}') != [], 60, "prometheus never scraped the service")
        assert query(prometheus, 'up{job="mega-asr"}')[0]["value"][1] == "1"
        poll(lambda: query(prometheus, "asr_audio_seconds_total") != [], 30, "no asr series")
        by_route = {r["metric"]["route"]: float(r["value"][1]) for r in query(prometheus, "asr_audio_seconds_total")}
        assert by_route == {"robust": 2.0, "base": 1.0}
        statuses = query(prometheus, 'asr_requests_total{endpoint="transcriptions",status="200"}')
        assert {r["metric"]["route"] for r in statuses} == {"base", "robust"}
        assert query(prometheus, "asr_queue_depth_audio_seconds")[0]["value"][1] == "0"
    finally:
        server.terminate()
        server.wait(timeout=30)
