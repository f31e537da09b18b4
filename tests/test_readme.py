"""The README's tables are generated from the code; this fails when they drift (fix: scripts/update_readme.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_tables_match_the_code():
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "scripts" / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (ROOT / "README.md").read_text()
    assert module.render(readme) == readme, "run: .venv/bin/python scripts/update_readme.py"


def test_readme_starts_with_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text().splitlines()
    assert readme[2:6] == ["```bash", readme[3], readme[4], "```"]
    assert readme[3].startswith("make demo") and readme[4].startswith("make test")
    assert "make test" in (ROOT / ".ci" / "run").read_text()
