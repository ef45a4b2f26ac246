"""``charts/twin/alerts/<concern>.yaml``: Prometheus rule files rendered from
:mod:`twin.devtools.alert_rules`.

Each file is a plain rule file (``groups:``), so ``promtool check rules`` and ``promtool test rules``
read it as it is, a Prometheus without the operator can load it (``rule_files:``), and the chart
wraps each one in a PrometheusRule (``templates/prometheusrules.yaml``, switched by
``monitoring.prometheusRules.enabled``). ``python -m twin.devtools.alerts --write`` writes them;
``--check`` exits 1 when the committed files differ (``tests/unit/test_alerts.py`` fails then too).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from twin.devtools import generated
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
    """Files that differ from what is rendered now (or should not be there)."""
    return generated.stale(files(), ALERTS, "*.yaml")


def write() -> None:
    generated.write(files(), ALERTS, "*.yaml")


def main(argv: list[str] | None = None) -> int:
    return generated.main(
        argv,
        module="twin.devtools.alerts",
        description=__doc__,
        files=files,
        folder=ALERTS,
        pattern="*.yaml",
        listing=lambda: files().values(),
    )


if __name__ == "__main__":
    sys.exit(main())
