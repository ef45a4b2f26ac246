"""The TwinProfile CustomResourceDefinition, built from the pydantic models (pure: a dict, no I/O).

The models in :mod:`twin.domain.profile`, :mod:`twin.domain.profile_cluster` and
:mod:`twin.domain.profile_status` are the one place the resource is described: bounds, enums,
descriptions, defaults and the CEL rules (``x-kubernetes-validations``, attached with
``json_schema_extra``). This module only translates their JSON schema into the *structural*
OpenAPI v3 subset the API server accepts:

- every ``$ref`` is inlined and titles are dropped;
- ``Optional[X]`` (``anyOf`` with ``null``) becomes ``X`` with ``nullable: true``;
- ``additionalProperties: false`` is dropped (a structural schema prunes unknown fields, and
  ``kubectl``'s strict field validation turns them into errors);
- JSON Schema's numeric ``exclusiveMinimum: x`` becomes OpenAPI's ``minimum: x`` +
  ``exclusiveMinimum: true``;
- a map's key constraints (``propertyNames``, ``patternProperties``), which OpenAPI cannot say,
  become a CEL rule over the keys;
- defaults come from the models, default factories included; an object's default that its
  fields' own defaults reproduce is written ``{}`` (the API server then fills the fields), unless
  the object has CEL rules of its own: the API server checks a default against its rules as
  written, before nested defaults, so there the whole object is spelled out.

``twin crd`` prints it as YAML, ``twin crd --write`` writes the committed copies.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from twin.domain.profile import API_GROUP, API_VERSION, KIND, NAME_PATTERN, TwinProfileSpec
from twin.domain.profile_status import TwinProfileStatus

VERSION = API_VERSION.removeprefix(f"{API_GROUP}/")
PLURAL = "twinprofiles"
SINGULAR = "twinprofile"
SHORT_NAMES = ("twin",)
CATEGORIES = ("llmtwin",)
CRD_NAME = f"{PLURAL}.{API_GROUP}"

PRINTER_COLUMNS: tuple[dict[str, Any], ...] = (
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Where it stands."},
    {"name": "Sources", "type": "integer", "jsonPath": ".status.sources", "description": "Sources listed."},
    {
        "name": "Documents",
        "type": "integer",
        "jsonPath": ".status.crawl.documents",
        "description": "Documents stored.",
    },
    {
        "name": "Champion",
        "type": "integer",
        "jsonPath": ".status.champion.version",
        "description": "The registered version served.",
    },
    {
        "name": "Endpoint",
        "type": "string",
        "jsonPath": ".status.endpoint",
        "description": "Where to call it.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)

_VALIDATIONS = "x-kubernetes-validations"
# The order keys are written in, so the generated YAML reads top-down: what a field is, its bounds,
# its rules, then what is inside it.
_KEY_ORDER = (
    "type",
    "format",
    "description",
    "nullable",
    "default",
    "enum",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "maxProperties",
    "required",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    _VALIDATIONS,
    "additionalProperties",
    "items",
    "properties",
)


class _WithFactoryDefaults(GenerateJsonSchema):
    """Renders ``default_factory`` defaults too: the CRD's defaults are the models' defaults."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()  # type: ignore[call-arg]
        return super().get_default_value(schema)


def openapi_schema(model: type[BaseModel], *, defaults: bool = True) -> dict[str, Any]:
    """``model``'s wire schema as a structural OpenAPI v3 schema (``defaults=False`` drops defaults)."""
    raw = model.model_json_schema(by_alias=True, schema_generator=_WithFactoryDefaults)
    defs = raw.pop("$defs", {})
    # A deep copy: inlined definitions share nothing, so the YAML has no anchors and edits stay local.
    return copy.deepcopy(_structural(raw, defs, defaults))


def _merge(base: JsonSchemaValue, over: JsonSchemaValue) -> JsonSchemaValue:
    """``over`` (a field's own keys) on top of ``base`` (its type's), keeping both sets of CEL rules."""
    merged = {**base, **over}
    rules = [*base.get(_VALIDATIONS, []), *over.get(_VALIDATIONS, [])]
    if rules:
        merged[_VALIDATIONS] = rules
    return merged


def _structural(node: JsonSchemaValue, defs: dict[str, Any], defaults: bool) -> dict[str, Any]:
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        return _structural(_merge(target, node), defs, defaults)
    if "allOf" in node and len(node["allOf"]) == 1:
        return _structural(_merge(node.pop("allOf")[0], node), defs, defaults)
    if "anyOf" in node:
        options = node.pop("anyOf")
        kept = [option for option in options if option != {"type": "null"}]
        if len(kept) != 1 or len(options) != 2:
            raise ValueError(f"only Optional[X] unions have a structural form, got {options}")
        return _ordered({**_structural(_merge(kept[0], node), defs, defaults), "nullable": True})
    return _keywords(node, defs, defaults)


def _keywords(node: JsonSchemaValue, defs: dict[str, Any], defaults: bool) -> dict[str, Any]:
    """One schema node's keywords in their OpenAPI form (its unions and references already resolved)."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        dropped = key in ("title", "propertyNames", "patternProperties") or (
            key == "additionalProperties" and value is False
        )
        if dropped or (key == "default" and (not defaults or value is None)):
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum"):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out[key] = {name: _structural(sub, defs, defaults) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _structural(value, defs, defaults)
        elif key == "default":
            out[key] = _without_nulls(value)
        else:
            out[key] = value
    _map_keys(node, out, defs, defaults)
    default = out.get("default")
    if (
        isinstance(default, dict)
        and "properties" in out
        and _VALIDATIONS not in out
        and apply_defaults(out, {}) == default
    ):
        out["default"] = {}
    return _ordered(out)


def _ordered(schema: dict[str, Any]) -> dict[str, Any]:
    known = {key: schema[key] for key in _KEY_ORDER if key in schema}
    return known | {key: schema[key] for key in sorted(schema) if key not in known}


def _map_keys(node: JsonSchemaValue, out: dict[str, Any], defs: dict[str, Any], defaults: bool) -> None:
    """A map's key constraints as a CEL rule over its keys (OpenAPI has no propertyNames)."""
    names = dict(node.get("propertyNames", {}))
    patterns = node.get("patternProperties", {})
    if len(patterns) > 1:
        raise ValueError("a map takes one key pattern")
    for pattern, values in patterns.items():
        names["pattern"] = pattern
        out["additionalProperties"] = _structural(values, defs, defaults)
    checks = []
    if "minLength" in names:
        checks.append(f"k.size() >= {names['minLength']}")
    if "maxLength" in names:
        checks.append(f"k.size() <= {names['maxLength']}")
    if "pattern" in names:
        checks.append(f"k.matches(r'{names['pattern']}')")
    if checks:
        bounds = f"{names.get('minLength', 0)} to {names.get('maxLength', 'any number of')} characters"
        shape = f" matching {names['pattern']}" if "pattern" in names else ""
        rule = {"rule": f"self.all(k, {' && '.join(checks)})", "message": f"keys must be {bounds}{shape}"}
        out[_VALIDATIONS] = [*out.get(_VALIDATIONS, []), rule]


def _without_nulls(value: Any) -> Any:
    """A default as the API server would store it: unset (None) fields left out."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """``value`` with ``schema``'s defaults filled in, the way the API server's structural defaulting
    does: a missing field with a default gets it, then defaulting goes on inside it."""
    if isinstance(value, dict) and "properties" in schema:
        out = dict(value)
        for name, sub in schema["properties"].items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_defaults(sub, out[name])
        return out
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        return {k: apply_defaults(schema["additionalProperties"], v) for k, v in value.items()}
    if isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def resource_schema() -> dict[str, Any]:
    """The whole TwinProfile's schema: apiVersion, kind, metadata, spec and status."""
    return {
        "type": "object",
        "description": "A person whose public writing becomes an AI twin: where they publish, and how "
        "the twin is crawled, trained and served.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": f"{API_VERSION}."},
            "kind": {"type": "string", "description": f"{KIND}."},
            "metadata": {"type": "object"},
            "spec": openapi_schema(TwinProfileSpec),
            "status": openapi_schema(TwinProfileStatus, defaults=False),
        },
        _VALIDATIONS: [
            {
                # The name keys the profile's data and names its children (twin-<name>-...).
                "rule": f"self.metadata.name.size() <= 63 && self.metadata.name.matches(r'{NAME_PATTERN}')",
                "message": "metadata.name must be a lower-case RFC 1123 label (a-z, 0-9, '-', at most 63)",
            }
        ],
    }


def custom_resource_definition() -> dict[str, Any]:
    """The ``twinprofiles.llmtwin.dev`` CustomResourceDefinition (apiextensions.k8s.io/v1)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/part-of": "llm-twin"}},
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": resource_schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(column) for column in PRINTER_COLUMNS],
                }
            ],
        },
    }


__all__ = [
    "CRD_NAME",
    "PLURAL",
    "PRINTER_COLUMNS",
    "VERSION",
    "apply_defaults",
    "custom_resource_definition",
    "openapi_schema",
    "resource_schema",
]
