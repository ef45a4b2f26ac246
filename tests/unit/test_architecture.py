"""The house's rules that import-linter cannot express (its contracts, in pyproject.toml, cover the
layers, the pipelines' independence and the domain's purity; ``make lint`` runs them).

- Only the composition root turns the settings tree into adapters: no module outside
  ``twin.wiring``, ``twin.settings`` and the ``twin`` CLI imports the root ``Settings`` class
  (a pipeline may take its own section, e.g. ``ServingSettings``: plain configuration).
- Small modules: none in ``services/`` passes 400 lines (docs/decisions.md names any exception).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"
PACKAGE = SERVICES / "twin"
MAX_LINES = 400
# Modules allowed to hold the root Settings: the composition root, the settings module itself, and
# the entry points that build the settings once per command.
SETTINGS_OWNERS = ("twin.wiring", "twin.settings", "twin.cli")


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SERVICES).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((name, path))
    return found


def _imports_root_settings(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "twin.settings":
            if any(alias.name == "Settings" for alias in node.names):
                lines.append(node.lineno)
        elif isinstance(node, ast.Import) and any(a.name == "twin.settings" for a in node.names):
            lines.append(node.lineno)  # `import twin.settings` would reach Settings as an attribute
    return lines


@pytest.mark.parametrize(("name", "path"), _modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_only_the_composition_root_and_entry_points_hold_the_settings_tree(name: str, path: Path) -> None:
    if any(name == owner or name.startswith(owner + ".") for owner in SETTINGS_OWNERS):
        return
    lines = _imports_root_settings(path)
    assert not lines, (
        f"{name} imports twin.settings.Settings (line {lines}): take the ports and the plain "
        "configuration (a settings section) it needs as arguments, built by twin.wiring"
    )


def test_no_module_passes_400_lines() -> None:
    long = {
        name: n
        for name, path in _modules()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"split these modules (or record why not in docs/decisions.md): {long}"


def test_the_rules_see_the_whole_package() -> None:
    # Guards the two tests above against walking an empty or wrong tree.
    names = {name for name, _ in _modules()}
    assert {"twin.wiring", "twin.ports", "twin.domain.profile", "twin.cli"} <= names
    assert _imports_root_settings(PACKAGE / "wiring" / "stores.py")


def test_the_import_graph_in_docs_is_the_codes() -> None:
    from twin.devtools import import_graph

    assert import_graph.committed() == import_graph.block(), (
        "docs/architecture.md's import graph is stale: run python -m twin.devtools.import_graph --write"
    )
