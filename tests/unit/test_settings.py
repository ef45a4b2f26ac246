from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

import pytest
from pydantic import BaseModel, Field, ValidationError

from twin.domain.profile import TwinProfile
from twin.settings import Settings


def test_nested_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWIN_CRAWLER__ALLOWED_NETWORKS", '["127.0.0.1/32", "10.0.0.0/8"]')
    monkeypatch.setenv("TWIN_CRAWLER__MAX_PAGE_BYTES", "4096")
    monkeypatch.setenv("TWIN_LINKEDIN__PASSWORD", "s3cret")
    monkeypatch.setenv("TWIN_DATABASE__DSN", "postgresql://u:pw@db:5432/twin")
    s = Settings()
    assert s.crawler.allowed_networks == ["127.0.0.1/32", "10.0.0.0/8"]
    assert s.crawler.max_page_bytes == 4096
    assert s.linkedin.password is not None and s.linkedin.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s) and "pw@" not in repr(s)  # secrets never print


def test_bad_network_in_allow_list_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWIN_CRAWLER__ALLOWED_NETWORKS", '["not-a-network"]')
    with pytest.raises(ValidationError, match="not-a-network"):
        Settings()


def _undescribed(model: type[BaseModel], where: str = "") -> Iterator[str]:
    """Every field of ``model`` and the models it nests (also inside lists and unions) without a
    description; each model is walked once."""
    seen: set[type[BaseModel]] = set()
    todo = [(model, where or model.__name__)]
    while todo:
        current, path = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name, field in current.model_fields.items():
            if not (field.description or "").strip():
                yield f"{path}.{name}"
            todo.extend((nested, f"{path}.{name}") for nested in _models_in(field.annotation))


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _models_in(arg)


@pytest.mark.parametrize("root", [Settings, TwinProfile], ids=lambda m: m.__name__)
def test_every_field_is_described_where_it_is_declared(root: type[BaseModel]) -> None:
    # The chart's values schema and the CRD are generated from these models: a field without a
    # description would reach users undocumented.
    assert list(_undescribed(root)) == []
    # ...and the descriptions reach the JSON schema the generators read (pydantic leaves a field's
    # description out beside a $ref when it repeats the referenced model's docstring).
    schema = root.model_json_schema(by_alias=True)
    defs = schema.get("$defs", {})
    for definition in [schema, *defs.values()]:
        for name, prop in definition.get("properties", {}).items():
            target = defs.get(prop.get("$ref", "").removeprefix("#/$defs/"), {})
            assert prop.get("description") or target.get("description"), name


def test_description_walk_finds_a_missing_description() -> None:
    # The rule above is only as good as the walk: it must reach nested sections and list items.
    class Item(BaseModel):
        bare: int = 0

    class Section(BaseModel):
        items: list[Item] = Field(default_factory=list, description="described")

    class Root(BaseModel):
        section: Section | None = Field(default=None, description="described")

    assert list(_undescribed(Root)) == ["Root.section.items.bare"]
