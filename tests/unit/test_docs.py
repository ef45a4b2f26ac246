"""Docs point at real files: every relative link in the README and ``docs/``, and every repository
path they or the code's docstrings name (``services/...``, ``tests/...``, ``docs/...``), exists.

A doc that sends the next person to a file that is gone is worse than no doc.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP = ("services", "tests", "docs", "bench", "scripts", "manifests", "charts", "images", "operators", ".ci")
# A path in backticks that starts at one of the repository's top-level folders; placeholders
# (<name>, *, {a,b}, ...) are patterns, not files.
PATH = re.compile(r"`((?:" + "|".join(re.escape(t) for t in TOP) + r")/[^`\s]*)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _sources() -> list[Path]:
    return sorted((ROOT / "services").rglob("*.py")) + sorted((ROOT / "bench").rglob("*.py"))


def _is_pattern(path: str) -> bool:
    return any(c in path for c in "<>*{}$") or path.endswith("...")


def _missing_paths(text: str) -> list[str]:
    return [
        p
        for p in PATH.findall(text)
        if not _is_pattern(p) and not (ROOT / p.rstrip(".,:;").split("#")[0].split("::")[0]).exists()
    ]


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_links_and_paths_exist(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = target.split("#")[0]
        if path and not (doc.parent / path).exists():
            broken.append(target)
    broken += _missing_paths(text)
    assert not broken, f"{doc.relative_to(ROOT)} points at files that do not exist: {broken}"


def test_the_checks_see_paths() -> None:
    # Guards the checks above against a pattern that silently matches nothing.
    named = [p for doc in _docs() for p in PATH.findall(doc.read_text(encoding="utf-8"))]
    assert "services/twin/wiring/" in named and len(named) > 20
    assert _missing_paths("see `docs/no-such-page.md`") == ["docs/no-such-page.md"]


def test_docstrings_name_real_files() -> None:
    broken = {
        str(source.relative_to(ROOT)): missing
        for source in _sources()
        if (missing := _missing_paths(source.read_text(encoding="utf-8")))
    }
    assert not broken, f"docstrings or comments name files that do not exist: {broken}"
