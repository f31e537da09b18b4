"""Every third-party module the service imports is installed by the project's own dependencies (what
`make demo` installs), not only by the test extras: a transitive dependency that drops a package (as
huggingface-hub 1.x -> 2.x dropped httpx) must not break a fresh install."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Tools run from the `tools` extra (evaluation scoring, router training), not by the service.
TOOLS_ONLY = ("app/evaluation/", "models/router_training/")


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(requirements: list[str]) -> set[str]:
    """Distributions installed by `requirements` and, recursively, their own unconditional requirements."""
    seen: set[str] = set()
    todo = [_name(r) for r in requirements]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:  # a requirement whose marker does not apply here
            continue
        for requirement in requirements:
            if "extra ==" not in requirement:
                todo.append(_name(requirement))
    return seen


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
              and node.level == 0}
    return {name.split(".")[0] for name in names}


def test_service_imports_are_installed_by_the_project_dependencies():
    # the installed project's own requirements without an extra: [project].dependencies
    declared = [r for r in metadata.requires("mega-asr-server") or [] if "extra ==" not in r]
    installed = _closure(declared)
    providers = metadata.packages_distributions()
    missing = {}
    for path in [*ROOT.glob("app/**/*.py"), *ROOT.glob("models/**/*.py")]:
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(TOOLS_ONLY):
            continue
        for module in _imports(path) - set(sys.stdlib_module_names) - {"app", "models", "__future__"}:
            distributions = {d.lower().replace("_", "-") for d in providers.get(module, [module])}
            if not distributions & installed:
                missing.setdefault(module, []).append(relative)
    assert not missing, f"imported by the service but not installed by [project].dependencies: {missing}"
