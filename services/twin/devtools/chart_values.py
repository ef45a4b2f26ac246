"""``charts/twin/values.yaml`` and ``values.schema.json``, rendered from the values model
(:mod:`twin.devtools.chart_values_model`), so defaults, types and documentation live in one place.

``python -m twin.devtools.chart_values`` prints the values file; ``--write`` writes both files into
the chart; ``--check`` exits 1 when the committed files differ (``tests/unit/test_chart_values.py``
fails then too). Each value's description becomes its comment in ``values.yaml``; the schema is
self-contained (no ``$ref``), ``additionalProperties: false`` everywhere, so a typo in a user's
values fails ``helm install`` instead of being silently ignored.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from twin.devtools.chart_values_model import ChartValues

CHART = Path(__file__).resolve().parents[3] / "charts" / "twin"
WIDTH = 100
HEADER = (
    "# Values of the twin chart. Generated from services/twin/devtools/chart_values_model.py by\n"
    "# `python -m twin.devtools.chart_values --write`: edit the model, not this file.\n"
    "# values.schema.json (generated alongside) is what helm validates your values against.\n"
)


def _comment(text: str, indent: str) -> list[str]:
    lines: list[str] = []
    for paragraph in text.strip().split("\n\n"):
        flat = " ".join(paragraph.split())
        lines += textwrap.wrap(flat, WIDTH - len(indent) - 2, break_on_hyphens=False)
    return [f"{indent}# {line}" for line in lines]


def _scalar(value: Any) -> str:
    dumped = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return dumped.removesuffix("\n...").removesuffix("...").strip()


def _render(model: BaseModel, depth: int) -> list[str]:
    indent = "  " * depth
    lines: list[str] = []
    for name, field in type(model).model_fields.items():
        key = field.alias or name
        value = getattr(model, name)
        if depth == 0 and lines:
            lines.append("")
        if isinstance(value, BaseModel):
            doc = type(value).__doc__ if depth == 0 else field.description
            lines += _comment(doc or field.description or "", indent)
            lines.append(f"{indent}{key}:")
            lines += _render(value, depth + 1)
            continue
        lines += _comment(field.description or "", indent)
        if isinstance(value, dict | list) and value:
            block = yaml.safe_dump(value, default_flow_style=False, sort_keys=False).rstrip("\n")
            lines.append(f"{indent}{key}:")
            lines += [f"{indent}  {line}" for line in block.splitlines()]
        else:
            lines.append(f"{indent}{key}: {_scalar(value)}")
    return lines


def values_yaml() -> str:
    """The chart's values.yaml: every default, each with its description as a comment."""
    return HEADER + "\n" + "\n".join(_render(ChartValues(), 0)) + "\n"


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
            rest = {k: _inline(v, defs) for k, v in node.items() if k != "$ref"}
            return {**target, **rest}
        return {k: _inline(v, defs) for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    return node


def schema() -> dict[str, Any]:
    """The JSON schema helm validates values against, with every reference inlined."""
    raw = ChartValues.model_json_schema(by_alias=True)
    defs = raw.pop("$defs", {})
    inlined = _inline(raw, defs)
    return {"$schema": "https://json-schema.org/draft-07/schema#", **inlined}


def schema_json() -> str:
    return json.dumps(schema(), indent=2) + "\n"


def generated() -> dict[Path, str]:
    """Each generated file of the chart with its content."""
    return {CHART / "values.yaml": values_yaml(), CHART / "values.schema.json": schema_json()}


def drifted(files: dict[Path, str] | None = None) -> list[Path]:
    """The generated files whose committed content differs (or that are missing)."""
    return [
        path
        for path, text in (files or generated()).items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="write values.yaml and values.schema.json")
    action.add_argument("--check", action="store_true", help="exit 1 when the committed files differ")
    args = parser.parse_args(argv)
    files = generated()
    if args.write:
        for path, text in files.items():
            path.write_text(text, encoding="utf-8")
    elif args.check:
        stale = drifted(files)
        for path in stale:
            sys.stderr.write(f"{path} is stale: run python -m twin.devtools.chart_values --write\n")
        raise SystemExit(1 if stale else 0)
    else:
        sys.stdout.write(files[CHART / "values.yaml"])


if __name__ == "__main__":
    main()
