"""A profile's stored data as a whole: what the operator observes of it and what its finalizer deletes.

The TwinProfile operator reports each profile's documents, chunks, dataset and champion in the
profile's status, and decides when to train from them; when the profile is deleted it removes what
lives outside the cluster. Both go through :class:`ProfileData` (Postgres and the model registry
behind one port: :class:`twin.adapters.profile_data.PgProfileData`, built by
:func:`twin.wiring.profile_data`).

Part of :mod:`twin.ports`; import them from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ChampionFigures:
    """The registry's champion for a profile: the version serving loads, with its held-out figures."""

    version: int
    figures: Mapping[str, float] = field(default_factory=dict)  # e.g. heldout_ppl, style_fidelity
    dataset_version: str | None = None


@dataclass(frozen=True)
class ProfileState:
    """What the stores hold for one profile, read fresh."""

    documents: int  # raw documents the crawler stored
    chunks: int  # embedded chunks the feature workers wrote
    # A fingerprint (sha256 hex) of the cleaned documents' (id, raw content hash) pairs: what a
    # training run would train on now. None: no cleaned document yet.
    snapshot: str | None
    # Cleaned documents new, changed or deleted since the dataset of the newest trained version
    # (the candidate, else the champion): the same comparison ``twin train --if-needed`` makes, so
    # the operator never starts a run that run would decline. None: nothing trained yet.
    changed_since_champion: int | None
    dataset_version: str | None  # the newest dataset version stored completely
    champion: ChampionFigures | None


@dataclass(frozen=True)
class PurgeReport:
    """What :meth:`ProfileData.purge` deleted (rows, registry entries)."""

    documents: int = 0
    cleaned_documents: int = 0
    chunks: int = 0
    crawl_runs: int = 0
    dead_letters: int = 0
    serving_requests: int = 0
    model_versions: int = 0
    registry_runs: int = 0  # dataset and training runs, artifacts included

    def total(self) -> int:
        return sum(vars(self).values())


class ProfileData(Protocol):
    """One profile's stored data: documents, chunks, crawl runs, dead letters and served requests
    in Postgres; dataset versions, training runs and registered versions in the model registry."""

    def state(self, profile: str) -> ProfileState:
        """What is stored for ``profile`` now. Raises
        :class:`~twin.domain.errors.DependencyNotReady` when Postgres or the registry cannot be
        reached: never an empty state that would look like "nothing stored"."""
        ...

    def purge(self, profile: str) -> PurgeReport:
        """Delete everything stored for ``profile`` and nothing of any other profile. Idempotent:
        a second call deletes nothing. Raises ``DependencyNotReady`` like :meth:`state` (the caller
        retries: a finalizer must not let the profile go while its data stays)."""
        ...
