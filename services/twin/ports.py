"""The Protocols at each expensive seam. Adapters implement them; fakes implement them too.

A fake is used beside, never instead of, a test against the real service.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from twin.domain.crawl import SourceReport, UpsertOutcome
from twin.domain.dataset import Dataset, InstructionGenerator
from twin.domain.documents import RawDocument
from twin.domain.features import (
    CleanedDocument,
    EmbeddedChunk,
    RawChange,
    RetrievalHit,
    RetrievalQuery,
)
from twin.domain.generation import AdapterRef, ChatTurn, EngineDelta, GenerationParams, RequestRecord
from twin.domain.links import LinkResult
from twin.domain.registry import ModelVersionInfo, TrainedRun


class AddressCheck(Protocol):
    """The address guard: refuses URLs whose host is internal (private, loopback, link-local...)
    unless allow-listed. Every crawler request, browser sub-request and link read passes it."""

    def check(self, url: str) -> None:
        """Return when ``url`` may be fetched; raise :class:`twin.domain.errors.BlockedTarget` if not."""
        ...


class DocumentStore(Protocol):
    """The ``raw_documents`` contract (owner: the crawler; reader: change capture)."""

    def begin_run(self, profile: str) -> uuid.UUID:
        """Record the start of a crawl run and return its id."""
        ...

    def upsert(self, documents: Sequence[RawDocument]) -> list[UpsertOutcome]:
        """Insert new documents, update changed ones, and write nothing for unchanged ones."""
        ...

    def delete_missing(self, profile: str, source_url: str, keep: Collection[str]) -> int:
        """Delete the source's documents whose canonical URL is not in ``keep``; return how many."""
        ...

    def finish_run(self, run_id: uuid.UUID, reports: Sequence[SourceReport]) -> None:
        """Record each source's outcome and close the run."""
        ...

    def documents(self, profile: str) -> list[RawDocument]:
        """Every stored document of ``profile``, ordered by platform then URL."""
        ...


class Embedder(Protocol):
    """Text → unit-length vectors. The same code path embeds chunks and, later, queries."""

    model_name: str
    dimension: int
    max_tokens: int  # the model's input limit; chunking stays under it

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-normalised vector per text, in order."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` (without special tokens)."""
        ...


class FeatureStore(Protocol):
    """The logical feature store: cleaned documents (training) and embedded chunks (RAG)."""

    def versions(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, tuple[int, str | None]]:
        """For each id the store knows: (lsn, raw content hash), hash None when deleted."""
        ...

    def apply(
        self,
        upserts: Sequence[tuple[CleanedDocument, Sequence[EmbeddedChunk]]],
        deletes: Sequence[tuple[uuid.UUID, int]],
    ) -> int:
        """In one transaction: replace each upserted document and all its chunks, delete each
        deleted one; any change older (by lsn) than what is stored is skipped. Returns how many
        changes took effect."""
        ...

    def dead_letter(self, change: RawChange, reason: str) -> None:
        """Keep a change that can never be processed, with why, and move on."""
        ...


class TrainingSnapshot(Protocol):
    """The training side of the feature store: the cleaned documents of one profile."""

    def cleaned_documents(self, profile: str) -> list[CleanedDocument]: ...


class Retriever(Protocol):
    def search(self, query: RetrievalQuery) -> list[RetrievalHit]:
        """Top-k chunks by cosine similarity, always within ``query.profile``."""
        ...


class ChangeFeed(Protocol):
    """Delivers raw changes of ``raw_documents`` in batches, at least once.

    ``run`` blocks, calling ``handler`` with each batch; the feed commits its position only after
    ``handler`` returns, so a crash replays the batch (the store makes replays harmless).
    """

    def run(
        self, handler: Callable[[Sequence[RawChange]], None], heartbeat: Callable[[], None] | None = None
    ) -> None:
        """Deliver batches until :meth:`stop`. ``heartbeat`` is called whenever the feed is up and
        has nothing to deliver (an empty poll, a Debezium heartbeat): the sign it has caught up."""
        ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class FeatureDeps:
    """What the feature service consumes, built by :func:`twin.wiring.feature_deps`.

    Factories rather than instances: the service (re)connects after a lost database or broker,
    and each reconnection needs a fresh feed and store connection.
    """

    embedder: Callable[[], Embedder]  # called once per run (Ray actors start here)
    feed: Callable[[], ChangeFeed]  # a fresh feed per (re)connection
    # The feature store on a fresh connection, checked against the embedder's dimension.
    store: Callable[[int], AbstractContextManager[FeatureStore]]
    # Build the HNSW index of each partition that outgrew exact search; returns the names built.
    maintain_indexes: Callable[[], list[str]]


# ----------------------------------------------------------------------------------- serving


class ChatEngine(Protocol):
    """The one engine protocol: generation on a base model with LoRA adapters loaded and unloaded
    at runtime. vLLM (:mod:`twin.adapters.vllm_engine`) and transformers
    (:mod:`twin.adapters.transformers_engine`) implement it; the engine deployment
    (:mod:`twin.serving.engine_server`) drives it. Prompts are token ids, so the engine's own
    tokenizer builds them (:meth:`chat_prompt`, :meth:`text_prompt`)."""

    name: str
    quantization: str | None  # the weights' quantization as the engine runs it (None: unquantized)

    def chat_prompt(self, messages: Sequence[ChatTurn]) -> list[int]:
        """The conversation through the base model's chat template, the assistant's turn opened."""
        ...

    def text_prompt(self, text: str) -> list[int]:
        """A raw prompt's token ids; an empty one starts from the model's start token."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes as output (no special tokens)."""
        ...

    async def load_adapter(self, adapter: AdapterRef) -> None:
        """Make ``adapter`` usable; a broken adapter raises and leaves the engine serving."""
        ...

    async def unload_adapter(self, adapter: AdapterRef) -> None: ...

    def generate(
        self, prompt_ids: list[int], params: GenerationParams, adapter: AdapterRef | None, request_id: str
    ) -> AsyncIterator[EngineDelta]:
        """Stream the completion of ``prompt_ids`` (with ``adapter``, or the base model); stop
        sequences are cut from the text, the last piece carries ``finish_reason``."""
        ...

    async def shutdown(self) -> None: ...

    def close(self) -> None:
        """Release the engine now (from a finaliser: no event loop needed)."""
        ...


class LinkReader(Protocol):
    """Reads the links of a user's message under the crawler's rules (the address guard, size and
    time caps, HTML only): :class:`twin.adapters.link_reader.HttpLinkReader`."""

    def read(self, urls: Sequence[str]) -> list[LinkResult]:
        """One result per URL, in order: its main text as a ``link`` source, or why not. Never
        raises: a link that cannot be read never fails the answer."""
        ...


class RequestLog(Protocol):
    """Where served requests are kept (``serving_requests`` in Postgres:
    :class:`twin.adapters.request_log.PostgresRequestLog`), written off the request path."""

    def record(self, record: RequestRecord) -> None:
        """Queue one finished request; never blocks and never raises (a lost row is counted)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ServingDeps:
    """What the Serve deployments build in their replicas, made by :func:`twin.wiring.serving_deps`.

    Factories, not instances, and picklable: Ray ships them to each replica, which builds its own
    engine, registry client, embedder and connections where it runs (a test passes its own, e.g.
    a fake engine).
    """

    engine: Callable[[], ChatEngine]  # the engine deployment's engine, on the profile's base model
    registry: Callable[[], ModelRegistry]  # the engine deployment follows the serving alias in it
    embedder: Callable[[], Embedder]  # the features' model: queries and ``/v1/embeddings``
    # A retriever on a connection of its own (one per ingress thread), checked against the dimension.
    retriever: Callable[[int], AbstractContextManager[Retriever]]
    link_reader: Callable[[], LinkReader]
    request_log: Callable[[], RequestLog | None]  # None: the request log is off
    api_keys: Callable[[], list[str]]  # read in the replica (a mounted Secret may change)


# ---------------------------------------------------------------------------------- training

# Rank 0 of a Ray Train run logs its step metrics through this: (name, value, step) triples, sent
# as one batch. It crosses process boundaries, so implementations must pickle.
MetricWriter = Callable[[Sequence[tuple[str, float, int]]], None]


class TrainingRun(Protocol):
    """One training run, open for the duration of :meth:`ModelRegistry.training_run`."""

    run_id: str

    def metric_writer(self) -> MetricWriter:
        """A picklable writer of this run's step metrics (the Ray Train worker holds it)."""
        ...

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Record run-level figures (step 0): evaluation, throughput, the judge's score."""
        ...

    def log_adapter(self, directory: Path) -> None:
        """Upload the trained adapter (what a registered version points at)."""
        ...

    def log_json(self, data: Any, artifact_file: str) -> None:
        """Keep ``data`` as a JSON artifact of the run (e.g. ``eval/generations.json``)."""
        ...

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...


class ModelRegistry(Protocol):
    """What training and serving need from the registry (MLflow: :mod:`twin.adapters.mlflow_store`):
    dataset versions with their lineage, training runs keyed by run key, and one registered model
    per profile whose versions are adapters, moved between by aliases (see
    :mod:`twin.domain.registry`)."""

    def model_name(self, profile: str) -> str:
        """The registered model's name (:func:`twin.domain.registry.model_name`)."""
        ...

    # dataset versions
    def find_dataset(self, profile: str, version: str) -> str | None:
        """The id of dataset ``version`` if it was stored completely before."""
        ...

    def save_dataset(self, dataset: Dataset, params: Mapping[str, Any]) -> str:
        """Store the dataset version (samples with lineage, input documents, stats) and the
        parameters it was built with; return its id."""
        ...

    def load_dataset(self, dataset_id: str) -> Dataset: ...

    def trained_dataset(self, info: ModelVersionInfo) -> Dataset:
        """The dataset version a registered version was trained on."""
        ...

    # training runs
    def find_training_run(self, profile: str, run_key: str) -> TrainedRun | None:
        """The finished run with ``run_key`` that registered a version, if any."""
        ...

    def training_run(
        self,
        profile: str,
        run_key: str,
        *,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        dataset: Dataset | None = None,
        dataset_id: str | None = None,
    ) -> AbstractContextManager[TrainingRun]:
        """A run with its parameters, tags and (when given) the stored dataset version as its input;
        it ends finished when the block completes and failed when it raises."""
        ...

    def download_run_adapter(self, run_id: str, dest: Path) -> Path:
        """A run's uploaded adapter, downloaded under ``dest`` (evaluation, before registering)."""
        ...

    # registered versions
    def register(
        self, profile: str, run_id: str, figures: Mapping[str, Any], *, aliases: Sequence[str] = ()
    ) -> ModelVersionInfo:
        """A new version from the run's adapter, tagged with ``figures`` (metrics and lineage), the
        ``aliases`` moved to it, and the run marked as having registered it."""
        ...

    def versions(self, profile: str) -> list[ModelVersionInfo]:
        """Every version with its aliases, oldest first ([] when none)."""
        ...

    def version(self, profile: str, version: int) -> ModelVersionInfo:
        """One version; an unknown one is :class:`~twin.domain.errors.InvalidSpec`."""
        ...

    def by_alias(self, profile: str, alias: str) -> ModelVersionInfo | None: ...

    def champion(self, profile: str) -> ModelVersionInfo | None:
        """The version serving loads (alias :data:`~twin.domain.registry.CHAMPION`)."""
        ...

    def set_alias(
        self, profile: str, alias: str, version: int, *, tags: Mapping[str, Any] | None = None
    ) -> None:
        """Move ``alias`` to ``version`` and tag that version with ``tags`` (who moved it, when)."""
        ...

    def tag_version(self, profile: str, version: int, tags: Mapping[str, Any]) -> None: ...

    def download_adapter(self, info: ModelVersionInfo, dest: Path) -> Path:
        """The version's adapter directory, downloaded under ``dest``."""
        ...


class Judge(Protocol):
    """An LLM rating how likely generated texts are by the author of reference texts, 1-10."""

    def score(self, references: Sequence[str], candidates: Sequence[str]) -> float | None:
        """The mean rating over the pairs it rated (None when it rated none)."""
        ...


@dataclass(frozen=True)
class TrainingDeps:
    """What the Train pipeline consumes, built by :func:`twin.wiring.training_deps`.

    Factories where the work happens later, elsewhere or maybe not at all: the feature store is
    opened only to build a dataset, the teacher and the judge are built only when used (a bad
    endpoint setting fails the step that needs it), and the evaluation Ray task rebuilds the
    registry and resolves the base model in its own process (so both factories pickle).
    """

    registry: ModelRegistry
    registry_factory: Callable[[], ModelRegistry]  # picklable
    snapshot: Callable[[], AbstractContextManager[TrainingSnapshot]]
    generator: Callable[[], InstructionGenerator]  # a fresh one per dataset build
    judge: Callable[[], Judge | None]  # None when judging is off
    resolve_model: Callable[[str], str]  # base model name or path -> loadable path; picklable
    connect_ray: Callable[[], None]  # join or start Ray; called only once a run needs it
    ray_local: bool  # Ray runs on this machine: its resources are the machine's
    results_dir: Path  # Ray Train's run directories


__all__ = [
    "AddressCheck",
    "ChangeFeed",
    "ChatEngine",
    "DocumentStore",
    "Embedder",
    "FeatureDeps",
    "FeatureStore",
    "InstructionGenerator",
    "Judge",
    "LinkReader",
    "MetricWriter",
    "ModelRegistry",
    "RequestLog",
    "Retriever",
    "ServingDeps",
    "TrainingDeps",
    "TrainingRun",
    "TrainingSnapshot",
]
