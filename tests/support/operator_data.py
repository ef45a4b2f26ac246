"""A profile's stored data for the operator's e2e tests, written and read through the real adapters.

The operator only *observes* the stores (documents, chunks, the champion) and *purges* them when a
profile is deleted; these helpers put data where the crawler, the feature workers and training
would have put it (Postgres through :class:`PostgresDocumentStore` and :class:`PgFeatureStore`,
the champion through the MLflow registry), and count what is left.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from twin.adapters.mlflow_store import MlflowStore
from twin.adapters.pgvector_store import PgFeatureStore
from twin.adapters.postgres import PostgresDocumentStore, connect, migrate
from twin.demo.content import load_demo_content
from twin.domain.chunking import chunk_document
from twin.domain.cleaning import clean_document
from twin.domain.dataset import DatasetConfig, build_dataset
from twin.domain.documents import Category, ExtractedDocument, Platform, RawDocument
from twin.domain.features import CleanedDocument, EmbeddedChunk
from twin.domain.instructions import OfflineInstructions
from twin.domain.registry import CANDIDATE, CHAMPION, ModelVersionInfo

DIMENSION = 384  # the feature store's vector column


def _unit(seed: int) -> list[float]:
    raw = [math.sin(seed * 31 + i) for i in range(DIMENSION)]
    norm = math.sqrt(sum(v * v for v in raw))
    return [v / norm for v in raw]


def store_documents(dsn: str, profile: str, n: int = 8) -> list[CleanedDocument]:
    """``n`` demo articles of ``profile``: raw documents (as a crawl stores them), and their
    cleaned documents and embedded chunks (as the feature workers store them)."""
    source = f"https://medium.com/@{profile}"
    fetched = datetime.now(UTC)
    with connect(dsn) as conn:
        migrate(conn)
        documents = PostgresDocumentStore(conn)
        run = documents.begin_run(profile)
        raw = [
            RawDocument.from_extracted(
                ExtractedDocument(
                    canonical_url=f"{source}/{a.slug}",
                    category=Category.ARTICLE,
                    title=a.title,
                    content=a.body,
                    author=profile,
                ),
                profile=profile,
                platform=Platform.MEDIUM,
                source_url=source,
                fetched_at=fetched,
                crawl_run_id=run,
            )
            for a in load_demo_content().medium[:n]
        ]
        documents.upsert(raw)
        documents.finish_run(run, [])
        cleaned = [clean_document(doc, lsn=i + 1, committed_at=fetched) for i, doc in enumerate(raw)]
        features = PgFeatureStore(conn, dimension=DIMENSION)
        features.apply(
            [
                (
                    doc,
                    [
                        EmbeddedChunk(chunk, _unit(i * 1000 + chunk.position))
                        for chunk in chunk_document(doc, lambda t: len(t.split()))
                    ],
                )
                for i, doc in enumerate(cleaned)
            ],
            [],
        )
    return cleaned


@dataclass(frozen=True)
class Stored:
    documents: int
    cleaned: int
    chunks: int
    crawl_runs: int

    @property
    def empty(self) -> bool:
        return not (self.documents or self.cleaned or self.chunks or self.crawl_runs)


def stored(dsn: str, profile: str) -> Stored:
    """What Postgres holds for ``profile`` now."""
    with connect(dsn) as conn:
        counts = [
            conn.execute(f"SELECT count(*) FROM {table} WHERE profile = %s", (profile,)).fetchone()
            for table in ("raw_documents", "cleaned_documents", "chunks", "crawl_runs")
        ]
    values = [int(row[0]) if row else 0 for row in counts]
    return Stored(*values)


def register_champion(
    registry: MlflowStore, profile: str, documents: list[CleanedDocument], scratch: Path
) -> ModelVersionInfo:
    """A dataset version built from ``documents``, a finished training run with an adapter, and
    its version registered as candidate and champion (what ``twin train`` leaves behind)."""
    dataset = build_dataset(
        profile,
        profile.title(),
        documents,
        generator=OfflineInstructions(),
        count_tokens=lambda t: len(t.split()),
        config=DatasetConfig(),
    )
    dataset_id = registry.save_dataset(dataset, {"generator": dataset.generator})
    adapter = scratch / f"adapter-{uuid.uuid4().hex[:6]}"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"r": 4}')
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 32)
    with registry.training_run(
        profile, "e2e", params={}, tags={}, dataset=dataset, dataset_id=dataset_id
    ) as run:
        run.log_adapter(adapter)
        return registry.register(
            profile,
            run.run_id,
            {"dataset_version": dataset.version, "base_model": "m", "heldout_ppl": 12.5},
            aliases=[CANDIDATE, CHAMPION],
        )
