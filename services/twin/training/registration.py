"""After evaluation: the promotion gate, and the registry work that files a trained adapter.

:func:`gate` is pure: it reads the evaluation report and the current champion.
:func:`register` and :func:`make_champion` go through the port (:class:`twin.ports.ModelRegistry`);
the version tags they write (``heldout_ppl``, ``gate``, ``promoted_by``...) are what ``twin models``
shows and what serving and people read, so their names are part of the contract.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from twin.domain.dataset import Dataset
from twin.domain.registry import CANDIDATE, CHAMPION, ModelVersionInfo
from twin.domain.training import PromotionDecision, promotion_decision
from twin.ports import ModelRegistry, TrainingRun
from twin.training.evaluate import BASE, EvalReport


def gate(
    report: EvalReport, champion: ModelVersionInfo | None, base_model: str, margin: float
) -> PromotionDecision:
    """The promotion decision for the candidate in ``report``: below the base model's held-out
    perplexity, and (:func:`twin.domain.training.promotion_decision`) below the champion's by
    ``margin``; a champion tuned from another base model is never replaced automatically."""
    candidate = report.scores[CANDIDATE].perplexity
    base = report.scores[BASE].perplexity
    if not candidate < base:
        return PromotionDecision(
            False, f"held-out perplexity {candidate:.3f} is not below the base model's {base:.3f}"
        )
    if champion is not None and champion.base_model != base_model:
        return PromotionDecision(
            False,
            f"the champion (version {champion.version}) is tuned from {champion.base_model!r}, the candidate"
            f" from {base_model!r}: perplexities under different tokenizers do not compare; promote by hand",
        )
    champion_ppl = report.scores["champion"].perplexity if "champion" in report.scores else None
    return promotion_decision(candidate, champion_ppl, margin=margin)


def version_figures(
    *, base_model: str, key: str, dataset: Dataset, report: EvalReport, decision: PromotionDecision
) -> dict[str, Any]:
    """The tags of a new version: its lineage, its held-out figures against the base model, and
    why the gate decided as it did."""
    return {
        "dataset_version": dataset.version,
        "base_model": base_model,
        "run_key": key,
        "heldout_ppl": report.scores[CANDIDATE].perplexity,
        "heldout_ppl_base": report.scores[BASE].perplexity,
        "style_fidelity": report.scores[CANDIDATE].style_fidelity or "",
        "style_fidelity_base": report.scores[BASE].style_fidelity or "",
        "gate": decision.reason,
    }


def register(
    registry: ModelRegistry,
    run: TrainingRun,
    profile: str,
    figures: dict[str, Any],
    *,
    promote: bool,
) -> tuple[ModelVersionInfo, bool]:
    """Register the run's adapter as the profile's ``candidate``, and make it champion when
    ``promote`` (the gate said so and auto-promotion is on). Returns the version and whether it
    was promoted."""
    info = registry.register(profile, run.run_id, figures, aliases=[CANDIDATE])
    if promote:
        make_champion(registry, profile, info.version, by="gate")
    run.set_tags({"twin.promoted": promote})
    return info, promote


def make_champion(registry: ModelRegistry, profile: str, version: int, *, by: str) -> None:
    """Move ``champion`` to ``version``, noting who moved it (``gate`` or ``manual``) and when."""
    registry.set_alias(profile, CHAMPION, version, tags={"promoted_by": by, "promoted_at": now()})


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
