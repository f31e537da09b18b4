"""Regenerate the README's configuration and metrics tables from the code (tests/test_readme.py checks them)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def settings_table() -> str:
    from app.settings import Settings

    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default
        if name == "cache_dir":
            default = "~/.cache/mega-asr"
        text = "(empty)" if default in ([], None) else str(default)
        rows.append(f"| `MEGA_ASR_{name.upper()}` | `{text}` | {(field.description or '').replace('|', '/')} |")
    return "\n".join(rows)


def metrics_table() -> str:
    from app.metrics import Metrics

    rows = ["| metric | type | meaning |", "|---|---|---|"]
    for family in Metrics().registry.collect():
        suffix = "_total" if family.type == "counter" else ""
        rows.append(f"| `{family.name}{suffix}` | {family.type} | {family.documentation} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    for marker, table in (("settings", settings_table()), ("metrics", metrics_table())):
        readme = re.sub(rf"<!-- {marker}:start -->.*?<!-- {marker}:end -->",
                        f"<!-- {marker}:start -->\n{table}\n<!-- {marker}:end -->", readme, flags=re.S)
    return readme


if __name__ == "__main__":
    path = ROOT / "README.md"
    path.write_text(render(path.read_text()))
