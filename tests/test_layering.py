"""Imports run one way, between rooms and between modules.

app/ is grouped into rooms (DESIGN.md §10): http (the HTTP face) -> jobs (background jobs) -> engine
(scheduling, pipeline, transcripts) -> audio (decoding, segmenting, VAD, gate); the modules at the top of
app/ are the wiring (factory, state, profiles, CLI) and the leaves every room may use (settings, errors,
metrics, logs). models/ knows nothing of the service. No module imports a module that imports it back,
directly or around a loop; lazy imports inside functions and TYPE_CHECKING imports count.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "models")
SERVICE_ONLY = {"app", "fastapi", "starlette", "uvicorn", "pydantic_settings", "prometheus_client", "httpx"}
# Modules at the top of app/ that every room may import: they import no room themselves.
LEAVES = {"app.settings", "app.errors", "app.metrics", "app.logs"}
# The wiring at the top of app/: no room imports it, except that the HTTP face reads the lifespan-owned
# state (app.state holds the rooms' long-lived objects; it never imports the HTTP face).
WIRING = {"app.main", "app.state", "app.profiles", "app.cli", "app.download"}
READS_STATE = {"app.http"}
# Rooms and what each must never import besides the wiring.
FORBIDDEN = {
    "app.audio": ("app.http", "app.jobs", "app.engine", "app.evaluation"),
    "app.engine": ("app.http", "app.jobs", "app.evaluation"),
    "app.jobs": ("app.http", "app.evaluation"),
    "app.http": ("app.evaluation",),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def imports_of(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """Every module `path` imports, wherever the import statement stands (top level, function, TYPE_CHECKING).
    `from a.b import c` names a.b.c when that is a module, else a.b. Relative imports are resolved."""
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: {m for m in imports_of(name, path, modules) if m in modules and m != name}
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def room_of(module: str) -> str | None:
    return next((room for room in FORBIDDEN if module == room or module.startswith(room + ".")), None)


def test_the_cycle_finder_finds_loops_of_any_length():
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_of_sees_lazy_relative_and_type_checking_imports(tmp_path):
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.x import y\n"
              "def f():\n    from . import z\n    import app.w\n")
    path = tmp_path / "mod.py"
    path.write_text(source)
    found = imports_of("app.pkg.mod", path, {"app.x.y", "app.pkg.z", "app.w"})
    assert {"app.x.y", "app.pkg.z", "app.w"} <= found


def test_no_module_imports_a_module_that_imports_it_back():
    assert cycles(import_graph()) == []


def test_models_never_import_the_service():
    modules = project_modules()
    offenders = {}
    for name, path in modules.items():
        if name.startswith("models"):
            bad = {m for m in imports_of(name, path, modules) if m.split(".")[0] in SERVICE_ONLY}
            if bad:
                offenders[name] = sorted(bad)
    assert not offenders, offenders


def test_rooms_point_one_way():
    offenders = {}
    for name, targets in import_graph().items():
        room = room_of(name)
        wiring = WIRING - {"app.state"} if room in READS_STATE else WIRING
        forbidden = (*FORBIDDEN[room], *wiring) if room else ()
        if name in LEAVES:  # the leaves import no room and no wiring
            forbidden = (*FORBIDDEN, *WIRING)
        bad = sorted(t for t in targets if any(t == f or t.startswith(f + ".") for f in forbidden))
        if bad:
            offenders[name] = bad
    assert not offenders, offenders


def test_the_state_never_imports_the_http_face():
    targets = import_graph()["app.state"]
    assert not {t for t in targets if t.startswith("app.http")}, targets


def test_packages_import_nothing_themselves():
    """Package __init__ files stay empty of imports, so importing a room's module imports only what it names."""
    modules = project_modules()
    busy = {name for name, path in modules.items()
            if path.name == "__init__.py" and imports_of(name, path, modules) - {"__future__"}}
    assert not busy, busy


def test_app_keeps_at_most_a_dozen_modules_at_its_top():
    top = sorted(path.name for path in (ROOT / "app").glob("*.py"))
    assert len(top) <= 12, top


def test_nothing_heavy_at_import_time():
    code = ("import sys, app.main, app.http.routes, app.engine.batcher, app.engine.pipeline, models.recognition;"
            "heavy = [m for m in ('transformers', 'silero_vad') if m in sys.modules];"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "", f"imported at import time: {out.stdout}"
