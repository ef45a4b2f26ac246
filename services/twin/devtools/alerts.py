"""``charts/twin/alerts/<concern>.yaml``: Prometheus rule files rendered from
:mod:`twin.devtools.alert_rules`.

Each file is a plain rule file (``groups:``), so ``promtool check rules`` and ``promtool test rules``
read it as it is, a Prometheus without the operator can load it (``rule_files:``), and the chart
wraps each one in a PrometheusRule (``templates/prometheusrules.yaml``, switched by
``monitoring.prometheusRules.enabled``). ``python -m twin.devtools.alerts --write`` writes them;
``--check`` exits 1 when the committed files differ (``tests/unit/test_alerts.py`` fails then too).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from twin.devtools.alert_rules import RUNBOOKS, Alert, Group, groups

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "charts" / "twin" / "alerts"
RUNBOOK_DIR = ROOT / "docs" / "runbooks"
HEADER = (
    "# Generated from services/twin/devtools/alert_rules.py by `python -m twin.devtools.alerts --write`:\n"
    "# edit the rules there, not this file. Runbooks: docs/runbooks/<alert>.md.\n"
)


def _rule(rule: Any) -> dict[str, Any]:
    if not isinstance(rule, Alert):
        return {"record": rule.record, "expr": rule.expr}
    return {
        "alert": rule.name,
        "expr": rule.expr,
        "for": rule.for_,
        "labels": {"severity": rule.severity, "component": "llm-twin"},
        "annotations": {
            "summary": rule.summary,
            "description": rule.description,
            "runbook_url": f"{RUNBOOKS}/{rule.name}.md",
        },
    }


def render(group: Group) -> str:
    """One concern's rule file."""
    body = {"groups": [{"name": f"twin-{group.concern}", "rules": [_rule(r) for r in group.rules]}]}
    return HEADER + yaml.safe_dump(body, sort_keys=False, width=10_000, allow_unicode=True)


def files() -> dict[Path, str]:
    return {ALERTS / f"{g.concern}.yaml": render(g) for g in groups()}


def stale() -> list[str]:
    """Files that differ from what the rules render (or should not be there)."""
    want = files()
    out = [str(p.relative_to(ROOT)) for p, text in want.items() if not p.exists() or p.read_text() != text]
    if ALERTS.exists():
        out += [str(p.relative_to(ROOT)) for p in sorted(ALERTS.glob("*.yaml")) if p not in want]
    return out


def write() -> None:
    ALERTS.mkdir(parents=True, exist_ok=True)
    want = files()
    for path in ALERTS.glob("*.yaml"):
        if path not in want:
            path.unlink()
    for path, text in want.items():
        path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twin.devtools.alerts", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write charts/twin/alerts/*.yaml")
    mode.add_argument("--check", action="store_true", help="exit 1 when the committed files differ")
    args = parser.parse_args(argv)
    if args.write:
        write()
        return 0
    if args.check:
        out = stale()
        for path in out:
            print(f"stale: {path} (run python -m twin.devtools.alerts --write)", file=sys.stderr)
        return 1 if out else 0
    for text in files().values():
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
