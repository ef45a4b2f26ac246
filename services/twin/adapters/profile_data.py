"""One profile's stored data in Postgres and the model registry: its state and its deletion.

:class:`PgProfileData` implements :class:`twin.ports.ProfileData` for the TwinProfile operator.
Every call opens a short connection of its own (the operator runs for weeks; Postgres may restart
under it) with a short connect timeout, so an unreachable database is a
:class:`~twin.domain.errors.DependencyNotReady` within seconds rather than a hung reconcile.

Deletion order matters because change capture is running: deleting the profile's ``raw_documents``
rows is what makes Debezium emit their delete events, so feature workers that lag behind still end
with no cleaned document or chunk of the profile (a late create is followed by its delete); the
cleaned documents and chunks are deleted here too, so the data is gone at once and not only when
the workers catch up.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import psycopg

from twin.domain.errors import DependencyNotReady
from twin.domain.registry import CANDIDATE, ModelVersionInfo
from twin.domain.training import retraining_decision
from twin.ports import ChampionFigures, ModelRegistry, ProfileState, PurgeReport

# The held-out figures a version is tagged with at registration (twin.training.registration):
# what the status shows beside the champion's version.
HELD_OUT_FIGURES = ("heldout_ppl", "heldout_ppl_base", "style_fidelity", "style_fidelity_base")

Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]


def snapshot_fingerprint(documents: Mapping[str, str]) -> str | None:
    """sha256 over the sorted ``id:hash`` pairs: the same documents give the same fingerprint."""
    if not documents:
        return None
    digest = hashlib.sha256()
    for doc_id, content_hash in sorted(documents.items()):
        digest.update(f"{doc_id}:{content_hash}\n".encode())
    return digest.hexdigest()


def held_out_figures(info: ModelVersionInfo) -> dict[str, float]:
    """The version's held-out figures that are numbers (a figure not measured is left out)."""
    figures: dict[str, float] = {}
    for name in HELD_OUT_FIGURES:
        try:
            value = info.metric(name)
        except ValueError:
            continue
        if value is not None and math.isfinite(value):
            figures[name] = value
    return figures


class PgProfileData:
    """The :class:`twin.ports.ProfileData` on Postgres (``connect`` opens a migrated connection)
    and a :class:`twin.ports.ModelRegistry`."""

    def __init__(self, connect: Connect, registry: ModelRegistry) -> None:
        self._connect = connect
        self._registry = registry
        # run id -> {document id: hash} of the dataset that run trained on (datasets never change)
        self._trained_on: dict[str, dict[str, str]] = {}

    # ------------------------------------------------------------------------------- reading

    def state(self, profile: str) -> ProfileState:
        try:
            with self._connect() as conn:
                documents, chunks, current = _counts(conn, profile)
        except psycopg.Error as exc:
            raise DependencyNotReady(f"Postgres could not be read: {exc}".strip()) from exc
        # latest_dataset raises when the registry is unreachable: only then are "no champion" and
        # "no candidate" below to be trusted as answers rather than as failed look-ups.
        dataset_version = self._registry.latest_dataset(profile)
        champion = self._registry.champion(profile)
        newest = self._registry.by_alias(profile, CANDIDATE) or champion
        changed = None
        if newest is not None:
            decision = retraining_decision(self._trained(newest), current, min_changed_documents=1)
            changed = decision.new + decision.changed + decision.deleted
        return ProfileState(
            documents=documents,
            chunks=chunks,
            snapshot=snapshot_fingerprint(current),
            changed_since_champion=changed,
            dataset_version=dataset_version,
            champion=None
            if champion is None
            else ChampionFigures(
                champion.version, held_out_figures(champion), champion.dataset_version or None
            ),
        )

    def _trained(self, info: ModelVersionInfo) -> dict[str, str]:
        if info.run_id not in self._trained_on:
            self._trained_on[info.run_id] = dict(self._registry.trained_dataset(info).documents)
        return self._trained_on[info.run_id]

    # ------------------------------------------------------------------------------ deleting

    def purge(self, profile: str) -> PurgeReport:
        try:
            with self._connect() as conn, conn.transaction():
                rows = _purge_rows(conn, profile)
        except psycopg.Error as exc:
            raise DependencyNotReady(f"Postgres could not delete profile {profile!r}: {exc}".strip()) from exc
        registry = self._registry.purge(profile)
        return PurgeReport(**rows, model_versions=registry.model_versions, registry_runs=registry.runs)


def _counts(conn: psycopg.Connection[Any], profile: str) -> tuple[int, int, dict[str, str]]:
    """Raw documents, chunks, and the cleaned documents' {id: raw content hash}, in one snapshot."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        documents = _scalar(conn, "SELECT count(*) FROM raw_documents WHERE profile = %s", profile)
        chunks = _scalar(conn, "SELECT coalesce(sum(n), 0) FROM chunk_counts WHERE profile = %s", profile)
        current = {
            str(doc_id): content_hash
            for doc_id, content_hash in conn.execute(
                "SELECT id, raw_content_hash FROM cleaned_documents WHERE profile = %s", (profile,)
            )
        }
    return documents, chunks, current


def _scalar(conn: psycopg.Connection[Any], query: str, profile: str) -> int:
    row = conn.execute(query.encode(), (profile,)).fetchone()
    return int(row[0]) if row else 0


def _purge_rows(conn: psycopg.Connection[Any], profile: str) -> dict[str, int]:
    """Delete the profile's rows in every table; the caller's transaction makes it all or nothing."""
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM raw_documents WHERE profile = %s UNION SELECT id FROM cleaned_documents"
            " WHERE profile = %s",
            (profile, profile),
        )
    ]
    letters = _dead_letters_of(conn.execute("SELECT id, key, value FROM dead_letters"), profile, ids)

    def delete(query: str, *params: Any) -> int:
        return conn.execute(query.encode(), params).rowcount

    counts = {
        "chunks": delete("DELETE FROM chunks WHERE profile = %s", profile),
        "cleaned_documents": delete("DELETE FROM cleaned_documents WHERE profile = %s", profile),
        "documents": delete("DELETE FROM raw_documents WHERE profile = %s", profile),
        "crawl_runs": delete("DELETE FROM crawl_runs WHERE profile = %s", profile),
        "serving_requests": delete("DELETE FROM serving_requests WHERE profile = %s", profile),
        "dead_letters": delete("DELETE FROM dead_letters WHERE id = ANY(%s)", letters),
    }
    delete("DELETE FROM document_tombstones WHERE document_id = ANY(%s)", ids)
    return counts


def _dead_letters_of(
    rows: Iterable[tuple[int, str | None, str | None]], profile: str, ids: list[Any]
) -> list[int]:
    """Dead letters carry Debezium's key and value as text (they failed to decode, so there is no
    profile column): a letter is the profile's when its row images name the profile or its key
    names one of the profile's documents."""
    known = {str(i) for i in ids}
    found = []
    for letter_id, key, value in rows:
        if _names_profile(value, profile) or _key_id(key) in known:
            found.append(letter_id)
    return found


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    if isinstance(parsed, dict) and "payload" in parsed and "schema" in parsed:
        return parsed["payload"]  # the converter's schemas.enable=true wrapper
    return parsed


def _names_profile(value: str | None, profile: str) -> bool:
    envelope = _json(value)
    if not isinstance(envelope, dict):
        return False
    images = (envelope.get("after"), envelope.get("before"), envelope)
    return any(isinstance(image, dict) and image.get("profile") == profile for image in images)


def _key_id(key: str | None) -> str | None:
    parsed = _json(key)
    if isinstance(parsed, dict) and parsed.get("id") is not None:
        try:
            return str(uuid.UUID(str(parsed["id"])))
        except ValueError:
            return None
    return None
