"""Imports run one way: app/ (api -> batching -> pipeline) -> models/. models/ knows nothing of the service."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE_ONLY = {"app", "fastapi", "starlette", "uvicorn", "pydantic_settings", "prometheus_client", "httpx"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_models_never_import_the_service():
    offenders = {}
    for path in (ROOT / "models").rglob("*.py"):
        bad = {name for name in imported_modules(path) if name.split(".")[0] in SERVICE_ONLY}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert not offenders, offenders


def test_service_layers_point_one_way():
    lower_must_not_import = {
        "pipeline.py": {"app.http.routes", "app.engine.batcher", "app.engine.transcription", "app.main"},
        "batching.py": {"app.http.routes", "app.engine.transcription", "app.main"},
        "transcription.py": {"app.http.routes", "app.main"},
    }
    for filename, forbidden in lower_must_not_import.items():
        imports = imported_modules(ROOT / "app" / filename)
        assert not imports & forbidden, (filename, imports & forbidden)


def test_nothing_heavy_at_import_time():
    import subprocess
    import sys

    code = ("import sys, app.main, app.http.routes, app.engine.batcher, app.engine.pipeline, models.recognition;"
            "heavy = [m for m in ('transformers', 'silero_vad') if m in sys.modules];"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "", f"imported at import time: {out.stdout}"
