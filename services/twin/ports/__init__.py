"""The Protocols at each expensive seam. Adapters implement them; fakes implement them too.

A fake is used beside, never instead of, a test against the real service.

One module per concern, all imported from here (``from twin.ports import ModelRegistry``):
:mod:`.stores` (the address guard, documents, features, embedding, retrieval, the change feed),
:mod:`.training` (the model registry, training runs, the judge), :mod:`.serving` (the chat engine,
link reading, the request log) and :mod:`.profile_data` (a profile's stored data as a whole: what
the operator observes and what its finalizer deletes).
"""

from __future__ import annotations

from twin.domain.dataset import InstructionGenerator
from twin.ports.profile_data import ChampionFigures, ProfileData, ProfileState, PurgeReport
from twin.ports.serving import ChatEngine, LinkReader, RequestLog, ServingDeps
from twin.ports.stores import (
    AddressCheck,
    ChangeFeed,
    DocumentStore,
    Embedder,
    FeatureDeps,
    FeatureStore,
    Retriever,
    TrainingSnapshot,
)
from twin.ports.training import (
    Judge,
    MetricWriter,
    ModelRegistry,
    RegistryPurge,
    TrainingDeps,
    TrainingRun,
)

__all__ = [
    "AddressCheck",
    "ChampionFigures",
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
    "ProfileData",
    "ProfileState",
    "PurgeReport",
    "RegistryPurge",
    "RequestLog",
    "Retriever",
    "ServingDeps",
    "TrainingDeps",
    "TrainingRun",
    "TrainingSnapshot",
]
