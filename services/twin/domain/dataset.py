"""Instruction datasets in the owner's voice, built from the cleaned documents (the training snapshot).

Every sample pairs an instruction with a *response that is the owner's own text*, so the voice the
adapter learns is theirs; only the instructions are made up, by an :class:`InstructionGenerator`
(offline templates here, or a teacher LLM behind the same seam).

The build, in order:

1. **Documents** are deduplicated by normalised content (a cross-post on Medium and Substack is one
   piece of writing), then **split by document**, never by chunk, stratified by category: a
   document and every sample cut from it land wholly in ``train`` or wholly in ``heldout``, so no
   held-out text leaks into training. The split is a stable hash of (seed, document id): the same
   documents always split the same way, and a new document never moves an old one.
2. **Pieces**: a document becomes one or more responses. Posts stay whole; articles are cut along
   their ``## `` sections (paragraphs packed when a section is too long); code along top-level
   definitions or line windows, as exact slices of the file. Pieces are token-bounded by the base
   model's tokenizer (a counter is passed in: this module does no I/O).
3. **Instructions** per category and platform ("Write a LinkedIn post about ...").
4. **Filters**: too-short and too-long responses are dropped; exact duplicates (after whitespace and
   case folding) are dropped; every drop is counted in :class:`DatasetStats`.

The **version id** is content-addressed: a digest of the input documents (id and raw content hash),
the builder's settings, and the generator's settings (:meth:`InstructionGenerator.config`). Same
inputs, same settings: same id, whatever the order documents arrive in or the machine. Each sample
keeps its lineage: document id, raw content hash and URL.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from twin.domain.chunking import ChunkPolicy, chunk_document, sections
from twin.domain.documents import Category, Platform
from twin.domain.errors import InsufficientData
from twin.domain.features import CleanedDocument

TokenCounter = Callable[[str], int]

# Bump when a change to this module changes what the same inputs produce: it is part of the id.
BUILDER_VERSION = 1


class Split(StrEnum):
    TRAIN = "train"
    HELDOUT = "heldout"


@dataclass(frozen=True)
class Seed:
    """One response to find an instruction for: a piece of one document, with where it came from."""

    document: CleanedDocument
    part: int  # 0-based index of the piece within its document
    parts: int  # how many pieces the document has
    text: str  # the response: the owner's own text
    section: str | None = None  # an article section's heading
    lines: tuple[int, int] | None = None  # a code piece's first and last line (1-based)


class InstructionGenerator(Protocol):
    """Instructions for responses. Offline templates or a teacher LLM; both deterministic in their
    config, which goes into the dataset version id."""

    name: str

    def config(self) -> dict[str, Any]:
        """Everything that changes the instructions it writes (model, prompt version...)."""
        ...

    def instructions(self, seeds: Sequence[Seed], owner: str) -> list[str]:
        """One instruction per seed, in order."""
        ...


@dataclass(frozen=True)
class DatasetConfig:
    """How documents become samples. All of it is part of the version id."""

    heldout_fraction: float = 0.2
    seed: int = 0
    min_response_chars: int = 80
    # Responses are cut to at most this many base-model tokens (the prompt is on top of it).
    max_response_tokens: int = 384
    # Code shorter than this many lines says little about how the owner writes: skipped.
    min_code_lines: int = 3

    def __post_init__(self) -> None:
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError("heldout_fraction must be between 0 and 1 (exclusive)")
        if self.max_response_tokens < 16:
            raise ValueError("max_response_tokens must be at least 16")
        if self.min_response_chars < 1:
            raise ValueError("min_response_chars must be at least 1")


@dataclass(frozen=True)
class Sample:
    """One instruction/response pair with its lineage."""

    id: str
    split: Split
    instruction: str
    response: str
    document_id: uuid.UUID
    content_hash: str  # the raw document's content hash: resolves against raw_documents/cleaned_documents
    url: str
    title: str
    platform: Platform
    category: Category
    part: int

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            split=self.split.value,
            document_id=str(self.document_id),
            platform=self.platform.value,
            category=self.category.value,
        )
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        return cls(
            id=data["id"],
            split=Split(data["split"]),
            instruction=data["instruction"],
            response=data["response"],
            document_id=uuid.UUID(data["document_id"]),
            content_hash=data["content_hash"],
            url=data["url"],
            title=data["title"],
            platform=Platform(data["platform"]),
            category=Category(data["category"]),
            part=int(data["part"]),
        )


@dataclass
class DatasetStats:
    documents: int = 0
    duplicate_documents: int = 0
    train_documents: int = 0
    heldout_documents: int = 0
    pieces: int = 0
    too_short: int = 0
    duplicate_samples: int = 0
    train_samples: int = 0
    heldout_samples: int = 0
    by_category: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    version: str
    profile: str
    generator: str
    samples: tuple[Sample, ...]
    stats: DatasetStats
    # (document id, raw content hash) of every input document: what the version was built from.
    documents: tuple[tuple[str, str], ...]

    def split(self, which: Split) -> list[Sample]:
        return [s for s in self.samples if s.split is which]

    @property
    def train(self) -> list[Sample]:
        return self.split(Split.TRAIN)

    @property
    def heldout(self) -> list[Sample]:
        return self.split(Split.HELDOUT)


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def dataset_version(
    documents: Iterable[CleanedDocument], config: DatasetConfig, generator_config: dict[str, Any]
) -> str:
    """The content-addressed id of the dataset these inputs make: ``ds-`` and 16 hex digits."""
    inputs = sorted((str(d.id), d.raw_content_hash) for d in documents)
    return "ds-" + _digest(BUILDER_VERSION, inputs, asdict(config), generator_config)[:16]


_FOLD_SPACES = re.compile(r"\s+")


def _fingerprint(text: str) -> str:
    folded = _FOLD_SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()


def _rank(seed: int, document_id: uuid.UUID) -> str:
    return hashlib.sha256(f"{seed}:{document_id}".encode()).hexdigest()


def split_documents(documents: Sequence[CleanedDocument], config: DatasetConfig) -> dict[uuid.UUID, Split]:
    """Train or held-out per document, stratified by category (see the module docstring).

    A category with at least two documents holds out ``round(n * fraction)`` of them, at least one
    and never all; a category with one document trains on it. The documents with the lowest
    stable hash are the held-out ones, so adding a document moves at most that one.
    """
    by_category: dict[Category, list[CleanedDocument]] = {}
    for d in documents:
        by_category.setdefault(d.category, []).append(d)
    split: dict[uuid.UUID, Split] = {}
    for docs in by_category.values():
        ranked = sorted(docs, key=lambda d: _rank(config.seed, d.id))
        held = (
            0
            if len(ranked) < 2
            else min(len(ranked) - 1, max(1, round(len(ranked) * config.heldout_fraction)))
        )
        for i, d in enumerate(ranked):
            split[d.id] = Split.HELDOUT if i < held else Split.TRAIN
    return split


def _pack_paragraphs(text: str, fits: Callable[[str], bool]) -> list[str]:
    """Consecutive paragraphs joined while they fit; a paragraph that never fits is cut by sentences."""
    out: list[str] = []
    current = ""
    for para in (p.strip() for p in text.split("\n\n")):
        if not para:
            continue
        candidate = f"{current}\n\n{para}" if current else para
        if fits(candidate):
            current = candidate
            continue
        if current:
            out.append(current)
        if fits(para):
            current = para
            continue
        current = ""
        for sentence in re.split(r"(?<=[.!?])\s+", para):
            candidate = f"{current} {sentence}" if current else sentence
            if fits(candidate):
                current = candidate
            else:
                if current:
                    out.append(current)
                current = sentence if fits(sentence) else ""
    if current:
        out.append(current)
    return out


def pieces(doc: CleanedDocument, count_tokens: TokenCounter, config: DatasetConfig) -> list[Seed]:
    """The responses one document yields (see the module docstring), in document order."""
    limit = config.max_response_tokens

    def fits(text: str) -> bool:
        return count_tokens(text) <= limit

    found: list[tuple[str, str | None, tuple[int, int] | None]] = []
    content = doc.content
    if doc.category is Category.CODE:
        if len(content.splitlines()) < config.min_code_lines:
            return []
        # Code pieces are exact slices of the file: top-level definitions or line windows.
        policy = ChunkPolicy(code_max_tokens=limit, code_window_lines=120, code_overlap_lines=0)
        for chunk in chunk_document(doc, count_tokens, policy, max_model_tokens=limit + 2):
            first, last = chunk.metadata.get("lines", [1, 1])
            found.append((chunk.text, None, (int(first), int(last))))
    elif fits(content.strip()):
        found.append((content.strip(), None, None))
    elif doc.category is Category.ARTICLE:
        for heading, start, end in sections(content):
            for text in _pack_paragraphs(content[start:end], fits):
                found.append((text, heading, None))
    else:
        found.extend((text, None, None) for text in _pack_paragraphs(content, fits))
    return [
        Seed(doc, i, len(found), text, section=heading, lines=lines)
        for i, (text, heading, lines) in enumerate(found)
    ]


def _sample_id(seed: Seed, instruction: str) -> str:
    return _digest(str(seed.document.id), seed.part, instruction, seed.text)[:16]


def build_dataset(
    profile: str,
    owner: str,
    documents: Sequence[CleanedDocument],
    *,
    generator: InstructionGenerator,
    count_tokens: TokenCounter,
    config: DatasetConfig = DatasetConfig(),  # frozen: a shared default is safe
) -> Dataset:
    """The dataset ``documents`` make for ``profile`` (see the module docstring).

    Raises :class:`InsufficientData` when there is nothing to train on or nothing to hold out:
    evaluation against the owner's unseen writing is what decides promotion, so a dataset
    without held-out documents is refused rather than trained on blindly.
    """
    own = [d for d in documents if d.profile == profile]
    if not own:
        raise InsufficientData(
            f"profile {profile!r} has no cleaned documents: crawl it and run features first"
        )
    version = dataset_version(own, config, generator.config())
    stats = DatasetStats(documents=len(own))
    # One copy of each piece of writing: the earliest id wins, whatever the input order.
    unique: dict[str, CleanedDocument] = {}
    for d in sorted(own, key=lambda d: str(d.id)):
        unique.setdefault(_fingerprint(d.content), d)
    stats.duplicate_documents = len(own) - len(unique)
    docs = sorted(unique.values(), key=lambda d: str(d.id))
    split = split_documents(docs, config)

    seeds: list[Seed] = []
    for d in docs:
        for s in pieces(d, count_tokens, config):
            stats.pieces += 1
            if len(s.text.strip()) < config.min_response_chars:
                stats.too_short += 1
                continue
            seeds.append(s)
    instructions = generator.instructions(seeds, owner) if seeds else []
    if len(instructions) != len(seeds):
        raise ValueError(
            f"generator {generator.name} returned {len(instructions)} instructions for {len(seeds)}"
        )

    samples: list[Sample] = []
    seen: set[str] = set()
    for s, instruction in zip(seeds, instructions, strict=True):
        key = _fingerprint(s.text)
        if key in seen:
            stats.duplicate_samples += 1
            continue
        seen.add(key)
        d = s.document
        samples.append(
            Sample(
                id=_sample_id(s, instruction),
                split=split[d.id],
                instruction=instruction,
                response=s.text,
                document_id=d.id,
                content_hash=d.raw_content_hash,
                url=d.url,
                title=d.title,
                platform=d.platform,
                category=d.category,
                part=s.part,
            )
        )
    train_docs = {s.document_id for s in samples if s.split is Split.TRAIN}
    held_docs = {s.document_id for s in samples if s.split is Split.HELDOUT}
    stats.train_documents, stats.heldout_documents = len(train_docs), len(held_docs)
    stats.train_samples = sum(s.split is Split.TRAIN for s in samples)
    stats.heldout_samples = len(samples) - stats.train_samples
    for sample in samples:
        key = sample.category.value
        stats.by_category[key] = stats.by_category.get(key, 0) + 1
    if not train_docs:
        raise InsufficientData(
            f"profile {profile!r}: no training samples left from {len(own)} document(s) after filters"
        )
    if not held_docs:
        raise InsufficientData(
            f"profile {profile!r}: no held-out documents ({len(docs)} distinct document(s); at least two "
            "of one category are needed so that one can be held out for evaluation)"
        )
    return Dataset(
        version=version,
        profile=profile,
        generator=generator.name,
        samples=tuple(samples),
        stats=stats,
        documents=tuple(sorted((str(d.id), d.raw_content_hash) for d in own)),
    )
