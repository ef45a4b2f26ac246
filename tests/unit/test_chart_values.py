"""The chart's values.yaml and values.schema.json are generated from one pydantic model
(``twin.devtools.chart_values``): they must be what the model renders now, agree with each other,
and name only operator settings that exist (the chart configures the operator through
``TWIN_OPERATOR_*`` variables, read by ``twin_operator.config.OperatorSettings``)."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from twin.devtools import chart_values
from twin.devtools.chart_values_model import ChartValues

CHART = chart_values.CHART
SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
VALUES = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))


def test_the_committed_values_and_schema_are_the_models() -> None:
    assert chart_values.drifted() == [], "run: python -m twin.devtools.chart_values --write"


def test_values_yaml_holds_exactly_the_models_defaults() -> None:
    assert ChartValues().model_dump(by_alias=True, mode="json") == VALUES


def test_values_yaml_validates_against_the_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.Draft7Validator(SCHEMA).validate(VALUES)


def _with(path: str, value: Any) -> dict[str, Any]:
    values: dict[str, Any] = json.loads(json.dumps(VALUES))
    *parents, leaf = path.split(".")
    node = values
    for key in parents:
        node = node[key]
    node[leaf] = value
    return values


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("operator.replicaz", 2),  # a typo is an error, not a silently ignored key
        ("operator.replicas", 0),
        ("operator.replicas", "2"),
        ("operator.image.pullPolicy", "Sometimes"),
        ("postgres.enabled", "yes"),
        ("kafka.clusterId", "too-short"),
        ("watchNamespaces", ["Not_A_Namespace"]),
        ("workloads.images.crawler.repository", ""),
        ("workloads.metrics.port", -1),
        ("workloads.metrics.port", 8080),  # Ray's own metrics export on the training head
    ],
)
def test_the_schema_rejects_bad_values(path: str, value: Any) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(_with(path, value))


def test_every_value_is_documented() -> None:
    def walk(model: type[BaseModel], where: str) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{where}{name}")
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                missing += walk(annotation, f"{where}{name}.")
        return missing

    assert walk(ChartValues, "") == []


def _field_exists(model: type[BaseModel], path: list[str]) -> bool:
    field = model.model_fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    annotation = field.annotation
    return (
        isinstance(annotation, type)
        and issubclass(annotation, BaseModel)
        and _field_exists(annotation, path[1:])
    )


def test_every_operator_variable_the_chart_sets_is_an_operator_setting() -> None:
    from twin_operator.config import OperatorSettings
    from twin_operator.runtime import RuntimeSettings

    names = set()
    for template in sorted((CHART / "templates").glob("*")):
        names |= set(re.findall(r"\bTWIN_OPERATOR_[A-Z0-9_]+", template.read_text(encoding="utf-8")))
    assert names, "the operator Deployment sets no TWIN_OPERATOR_* variable"
    unknown = [
        n
        for n in sorted(names)
        if not any(
            _field_exists(model, n.removeprefix("TWIN_OPERATOR_").lower().split("__"))
            for model in (OperatorSettings, RuntimeSettings)
        )
    ]
    assert unknown == [], f"variables no OperatorSettings field reads: {unknown}"


def test_the_schema_refuses_the_ray_head_ports_the_operator_refuses() -> None:
    from twin.devtools.chart_values_monitoring import RAY_HEAD_PORTS
    from twin_operator.config import RAY_HEAD_PORTS as OPERATOR_RAY_HEAD_PORTS

    assert set(RAY_HEAD_PORTS) == OPERATOR_RAY_HEAD_PORTS
