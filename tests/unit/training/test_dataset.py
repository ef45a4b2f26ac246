"""Dataset building on the sample owner's real writing: the split is by document (no leaks), the
version id is content-addressed, lineage resolves, filters and dedupe count what they drop.

Token limits use SmolLM2's real tokenizer when the bundled model has been converted (the
integration tests convert it); the structural tests use a whitespace counter.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from typing import Any

import pytest

from twin.demo.corpus import demo_documents
from twin.domain.dataset import (
    DatasetConfig,
    Seed,
    Split,
    build_dataset,
    dataset_version,
    pieces,
    split_documents,
)
from twin.domain.documents import Category, Platform
from twin.domain.errors import InsufficientData
from twin.domain.features import CleanedDocument
from twin.domain.instructions import OfflineInstructions

DOCS = [doc for _, doc in demo_documents()]
OWNER = "Alice Moreau"


def words(text: str) -> int:
    return len(text.split())


def build(docs: list[CleanedDocument] = DOCS, **config: Any) -> Any:
    return build_dataset(
        "alice",
        OWNER,
        docs,
        generator=OfflineInstructions(),
        count_tokens=words,
        config=DatasetConfig(**config),
    )


def test_every_document_lands_wholly_in_one_split() -> None:
    ds = build()
    splits: dict[uuid.UUID, set[Split]] = {}
    for s in ds.samples:
        splits.setdefault(s.document_id, set()).add(s.split)
    assert all(len(v) == 1 for v in splits.values())  # no document in both train and held-out
    train = {d for d, v in splits.items() if Split.TRAIN in v}
    held = {d for d, v in splits.items() if Split.HELDOUT in v}
    assert train and held and not train & held
    # Stratified: every category with two or more documents holds one out.
    assert {s.category for s in ds.heldout} == {Category.ARTICLE, Category.POST, Category.CODE}
    assert ds.stats.train_samples == len(ds.train) and ds.stats.heldout_samples == len(ds.heldout)


def test_the_split_is_stable_and_a_new_document_moves_at_most_itself() -> None:
    config = DatasetConfig()
    before = split_documents(DOCS, config)
    assert split_documents(list(reversed(DOCS)), config) == before
    extra = dataclasses.replace(DOCS[0], id=uuid.UUID(int=12345), content="A brand new article. " * 30)
    after = split_documents([*DOCS, extra], config)
    moved = [d for d in before if before[d] != after[d]]
    assert len(moved) <= 1


def test_version_id_is_content_addressed() -> None:
    gen = OfflineInstructions().config()
    config = DatasetConfig()
    v1 = dataset_version(DOCS, config, gen)
    assert v1.startswith("ds-") and len(v1) == 19
    shuffled = DOCS[:]
    random.Random(7).shuffle(shuffled)
    assert dataset_version(shuffled, config, gen) == v1  # order does not matter
    assert build().version == v1 == build(list(reversed(DOCS))).version
    edited = [dataclasses.replace(DOCS[0], raw_content_hash="changed"), *DOCS[1:]]
    assert dataset_version(edited, config, gen) != v1  # content does
    assert dataset_version(DOCS[1:], config, gen) != v1  # so does a deletion
    assert dataset_version(DOCS, DatasetConfig(heldout_fraction=0.3), gen) != v1  # builder settings
    assert dataset_version(DOCS, config, {**gen, "templates": 99}) != v1  # generator settings


def test_lineage_names_the_source_document_and_its_hash() -> None:
    by_id = {d.id: d for d in DOCS}
    ds = build()
    for s in ds.samples:
        doc = by_id[s.document_id]
        assert s.content_hash == doc.raw_content_hash and s.url == doc.url
        assert s.response in doc.content  # the response is the owner's own text, verbatim
    assert sorted(ds.documents) == sorted((str(d.id), d.raw_content_hash) for d in DOCS)


def test_responses_respect_the_token_budget_and_code_stays_exact() -> None:
    ds = build(max_response_tokens=120)
    assert all(words(s.response) <= 120 for s in ds.samples)
    code = [s for s in ds.samples if s.category is Category.CODE]
    assert code
    by_id = {d.id: d for d in DOCS}
    for s in code:
        assert s.response in by_id[s.document_id].content  # exact slice, indentation and all
    # A long article is cut along its sections, each piece naming its section in the instruction.
    article_parts = [s for s in ds.samples if s.category is Category.ARTICLE and "section" in s.instruction]
    assert article_parts


def test_filters_and_dedupe_are_counted() -> None:
    twin = dataclasses.replace(DOCS[0], id=uuid.UUID(int=999), url="https://elsewhere/copy")  # a cross-post
    short = dataclasses.replace(DOCS[1], id=uuid.UUID(int=998), content="Too short.", raw_content_hash="s")
    ds = build([*DOCS, twin, short], min_response_chars=40)
    assert ds.stats.duplicate_documents == 1
    assert ds.stats.too_short >= 1
    assert twin.id not in {s.document_id for s in ds.samples} or DOCS[0].id not in {
        s.document_id for s in ds.samples
    }
    texts = [s.response.casefold() for s in ds.samples]
    assert len(texts) == len(set(texts))


def test_instructions_per_category_and_platform() -> None:
    ds = build()
    kinds = {(s.platform, s.category): s.instruction for s in ds.samples}
    assert "LinkedIn post" in kinds[(Platform.LINKEDIN, Category.POST)]
    assert "Medium article" in kinds[(Platform.MEDIUM, Category.ARTICLE)]
    assert "Substack post" in kinds[(Platform.SUBSTACK, Category.ARTICLE)]
    assert "`" in kinds[(Platform.GITHUB, Category.CODE)]  # names the file or the definition
    assert len({s.instruction for s in ds.samples}) == len(ds.samples)  # no two samples share one


def test_the_offline_generator_is_deterministic() -> None:
    seeds = [seed for d in DOCS[:10] for seed in pieces(d, words, DatasetConfig())]
    gen = OfflineInstructions()
    assert gen.instructions(seeds, OWNER) == gen.instructions(list(seeds), OWNER)
    assert isinstance(seeds[0], Seed)


def test_empty_and_unsplittable_inputs_are_refused() -> None:
    with pytest.raises(InsufficientData, match="no cleaned documents"):
        build([])
    with pytest.raises(InsufficientData, match="no held-out documents"):
        build([DOCS[0]])  # one document: nothing can be held out
    other = [dataclasses.replace(d, profile="bob") for d in DOCS]
    with pytest.raises(InsufficientData, match="no cleaned documents"):
        build(other)  # another owner's writing is never used


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="heldout_fraction"):
        DatasetConfig(heldout_fraction=1.0)
    with pytest.raises(ValueError, match="max_response_tokens"):
        DatasetConfig(max_response_tokens=4)
