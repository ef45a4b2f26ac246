"""``twin train``: dataset version → Ray Train LoRA run → evaluation → registry → promotion.

Order of work, and what stops it early:

1. resolve the base model (an unknown path, or LoRA target modules it does not have, is an
   :class:`InvalidSpec`);
2. read the profile's cleaned documents and build the dataset version (nothing to train on or
   nothing to hold out is :class:`InsufficientData`); store it in the registry unless that
   version is stored already;
3. derive the run key (dataset, base model, spec, knobs); a finished run with that key means the
   work is done: nothing is trained (``twin train`` is idempotent);
4. connect to Ray and plan the run for the hardware it offers (impossible combinations are
   :class:`InvalidSpec` too); train on Ray Train (:mod:`twin.training.launch`), upload the adapter,
   evaluate base, candidate and (same base model only) champion on the held-out samples as one
   Ray task, and ask the judge when there is one;
5. register the adapter as a new version, alias ``candidate``; alias ``champion`` when the gate
   (:func:`twin.training.registration.gate`) says so and auto-promotion is on.

Steps 1-3 happen before any training run exists, so bad input registers nothing.

The functions here take ports (:class:`twin.ports.TrainingDeps`, built by
:func:`twin.wiring.training_deps`) and plain configuration (the ``training`` settings section and
the profile); they never build an adapter or read the root settings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin.domain.dataset import Dataset, build_dataset
from twin.domain.errors import InvalidSpec
from twin.domain.profile import TwinProfile
from twin.domain.registry import CANDIDATE, CHAMPION, ModelVersionInfo, TrainedRun
from twin.domain.training import RetrainDecision, TrainingPlan, plan_training, retraining_decision, run_key
from twin.observability import training as obs
from twin.ports import ModelRegistry, TrainingDeps, TrainingRun
from twin.settings import TrainingSettings
from twin.training import params
from twin.training.evaluate import BASE, EvalReport
from twin.training.hardware import detect_hardware, system_info, worker_cpus
from twin.training.launch import Step, evaluate_on_ray, fit
from twin.training.registration import gate, make_champion, register, version_figures

log = logging.getLogger(__name__)

Stage = Callable[[str], None]

__all__ = [
    "Stage",
    "Step",
    "TrainOutcome",
    "build_profile_dataset",
    "ensure_dataset",
    "promote",
    "retrain_needed",
    "train_profile",
]


@dataclass
class TrainOutcome:
    """What ``twin train`` reports (``--json`` prints these fields)."""

    profile: str
    dataset_version: str
    trained: bool
    reason: str
    run_id: str | None = None
    version: int | None = None
    promoted: bool = False
    promotion_reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    dataset_stats: dict[str, Any] = field(default_factory=dict)


def train_profile(
    profile: TwinProfile,
    deps: TrainingDeps,
    config: TrainingSettings,
    *,
    on_stage: Stage = lambda s: None,
    on_step: Step | None = None,
    force: bool = False,
) -> TrainOutcome:
    """Train (or find already trained) the adapter for the profile's current data.

    Counts the run's outcome (trained, already_trained, failed) and duration, its steps and loss,
    the new version's held-out figures and the promotion in :mod:`twin.observability.training`."""
    started = time.monotonic()
    obs.run_started(profile.name)
    meter = obs.StepMeter(profile.name)

    def step(number: int, total: int, loss: float) -> None:
        meter(number, total, loss)
        if on_step is not None:
            on_step(number, total, loss)

    try:
        outcome = _train_profile(profile, deps, config, on_stage=on_stage, on_step=step, force=force)
    except BaseException:  # SIGTERM's SystemExit included: the run did not finish
        obs.run_finished(profile.name, "failed", time.monotonic() - started)
        raise
    result = "trained" if outcome.trained else "already_trained"
    obs.run_finished(profile.name, result, time.monotonic() - started)
    if outcome.trained and outcome.version is not None:
        obs.evaluated(profile.name, outcome.version, outcome.metrics)
        obs.promotion(profile.name, promoted=outcome.promoted)
    return outcome


def _train_profile(
    profile: TwinProfile,
    deps: TrainingDeps,
    config: TrainingSettings,
    *,
    on_stage: Stage,
    on_step: Step,
    force: bool,
) -> TrainOutcome:
    spec, registry = profile.spec, deps.registry
    on_stage(f"resolving base model {spec.base_model}")
    model_path = deps.resolve_model(spec.base_model)
    from twin.training.lora import check_model

    check_model(model_path, list(spec.training.lora.target_modules))

    on_stage("building the dataset version")
    dataset, dataset_params = build_profile_dataset(profile, deps, config, model_path)
    dataset_id = ensure_dataset(registry, dataset, dataset_params)
    key = run_key(dataset.version, spec.base_model, spec.training, params.knobs(config))
    existing = None if force else registry.find_training_run(profile.name, key)
    if existing is not None:
        return _already_trained(registry, profile.name, dataset, existing)

    on_stage("planning the run")
    deps.connect_ray()
    plan = plan_training(spec.training, detect_hardware(), cpu_workers=config.cpu_workers)
    cpus = worker_cpus(config.cpus_per_worker, ray_local=deps.ray_local)
    with registry.training_run(
        profile.name,
        key,
        params=params.run_params(profile, config, plan, dataset),
        tags=system_info(plan),
        dataset=dataset,
        dataset_id=dataset_id,
    ) as run:
        on_stage(f"training on Ray Train ({plan.num_workers} {'GPU' if plan.use_gpu else 'CPU'} worker(s))")
        metrics = _train(
            profile, deps, config, plan=plan, dataset=dataset, run=run, key=key, cpus=cpus, on_step=on_step
        )

        on_stage("evaluating on held-out writing")
        champion = registry.champion(profile.name)
        report = _evaluate(
            profile, deps, config, plan=plan, dataset=dataset, run=run, champion=champion, cpus=cpus
        )
        metrics.update(report.metrics())
        judge_score = _judge(deps, report)
        if judge_score is not None:
            metrics["judge_score"] = judge_score
        run.log_metrics({k: v for k, v in metrics.items() if not k.startswith("run_")})
        run.log_json(
            {
                "instructions": report.instructions,
                "references": report.references,
                "generations": {name: s.generations for name, s in report.scores.items()},
            },
            "eval/generations.json",
        )
        decision = gate(report, champion, spec.base_model, config.promotion_margin)

        on_stage("registering the adapter")
        figures = version_figures(
            base_model=spec.base_model, key=key, dataset=dataset, report=report, decision=decision
        )
        info, promoted = register(
            registry, run, profile.name, figures, promote=decision.promote and config.auto_promote
        )
    return TrainOutcome(
        profile.name,
        dataset.version,
        trained=True,
        reason="trained",
        run_id=run.run_id,
        version=info.version,
        promoted=promoted,
        promotion_reason=decision.reason if config.auto_promote else "auto-promotion is off",
        metrics=metrics,
        dataset_stats=dict(dataset.stats.__dict__),
    )


def _train(
    profile: TwinProfile,
    deps: TrainingDeps,
    config: TrainingSettings,
    *,
    plan: TrainingPlan,
    dataset: Dataset,
    run: TrainingRun,
    key: str,
    cpus: int,
    on_step: Step | None,
) -> dict[str, float]:
    """Fit on Ray Train, upload the adapter to the run; the workers' summary figures."""
    loop = params.loop_config(
        profile,
        config,
        plan,
        dataset,
        key=key,
        threads=cpus,
        resolve_model=deps.resolve_model,
        metrics=run.metric_writer(),
    )
    result = fit(loop, plan, cpus=cpus, results_dir=deps.results_dir, on_step=on_step)
    with result.checkpoint.as_directory() as adapter_dir:
        run.log_adapter(Path(adapter_dir))
    return {k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)}


def _evaluate(
    profile: TwinProfile,
    deps: TrainingDeps,
    config: TrainingSettings,
    *,
    plan: TrainingPlan,
    dataset: Dataset,
    run: TrainingRun,
    champion: ModelVersionInfo | None,
    cpus: int,
) -> EvalReport:
    """Base, candidate and champion on the held-out samples (style generations for the first two).
    The champion takes part only when tuned from the same base model: perplexities under
    different tokenizers do not compare."""
    adapters = {CANDIDATE: run.run_id}
    if champion is not None and champion.base_model == profile.spec.base_model:
        adapters["champion"] = champion.run_id
    return evaluate_on_ray(
        registry=deps.registry_factory,
        resolve_model=deps.resolve_model,
        base_model=profile.spec.base_model,
        adapters=adapters,
        heldout=dataset.heldout,
        config=params.eval_config(profile, config, threads=cpus),
        plan=plan,
        style_for=[BASE, CANDIDATE],
    )


def _judge(deps: TrainingDeps, report: EvalReport) -> float | None:
    """The judge's mean rating of the candidate's generations (None when judging is off)."""
    judge = deps.judge()
    if judge is None:
        return None
    return judge.score(report.references, report.scores[CANDIDATE].generations)


def _already_trained(
    registry: ModelRegistry, profile: str, dataset: Dataset, run: TrainedRun
) -> TrainOutcome:
    return TrainOutcome(
        profile,
        dataset.version,
        trained=False,
        reason=f"dataset {dataset.version} was trained with this config (run {run.run_id})",
        run_id=run.run_id,
        version=run.version,
        promoted=CHAMPION in registry.version(profile, run.version).aliases,
        metrics=dict(run.metrics),
        dataset_stats=dict(dataset.stats.__dict__),
    )


def build_profile_dataset(
    profile: TwinProfile, deps: TrainingDeps, config: TrainingSettings, model_path: str
) -> tuple[Dataset, dict[str, Any]]:
    """The profile's dataset version from the training snapshot (not stored anywhere yet), and the
    parameters to store it with (a teacher's fallback count among them)."""
    generator = deps.generator()
    dataset_config = params.dataset_config(config)
    with deps.snapshot() as snapshot:
        documents = snapshot.cleaned_documents(profile.name)
    dataset = build_dataset(
        profile.name,
        profile.spec.owner.display_name,
        documents,
        generator=generator,
        count_tokens=_token_counter(model_path),
        config=dataset_config,
    )
    built_with = params.dataset_params(profile, generator.name, generator.config(), dataset_config)
    fallbacks = getattr(generator, "fallbacks", None)  # a teacher counts replies it could not use
    if fallbacks is not None:
        built_with["generator.fallbacks"] = fallbacks
    return dataset, built_with


def ensure_dataset(registry: ModelRegistry, dataset: Dataset, dataset_params: dict[str, Any]) -> str:
    """The id of the stored dataset version, storing it first if it is new."""
    return registry.find_dataset(dataset.profile, dataset.version) or registry.save_dataset(
        dataset, dataset_params
    )


def promote(registry: ModelRegistry, profile: str, version: int | None = None) -> tuple[int | None, int]:
    """Move ``champion`` to ``version`` (a rollback, or any registered version), or to the current
    candidate when no version is given. Returns (previous champion, new champion)."""
    if version is None:
        candidate = registry.by_alias(profile, CANDIDATE)
        if candidate is None:
            raise InvalidSpec(f"profile {profile!r} has no candidate model to promote: run twin train first")
        target = candidate
    else:
        target = registry.version(profile, version)
    previous = registry.champion(profile)
    make_champion(registry, profile, target.version, by="manual")
    obs.promotion(profile, promoted=True, by="manual")
    return (previous.version if previous else None), target.version


def retrain_needed(deps: TrainingDeps, profile: str, *, min_changed_documents: int) -> RetrainDecision:
    """The continuous-training policy on the stored documents vs the newest trained dataset.

    ``min_changed_documents`` is the profile's ``spec.training.retraining.minChangedDocuments``: the
    operator decides with the same number, so the RayJob it starts and this check inside it agree."""
    candidate = deps.registry.by_alias(profile, CANDIDATE)
    trained_on = dict(deps.registry.trained_dataset(candidate).documents) if candidate is not None else None
    with deps.snapshot() as snapshot:
        current = {str(d.id): d.raw_content_hash for d in snapshot.cleaned_documents(profile)}
    return retraining_decision(trained_on, current, min_changed_documents=min_changed_documents)


def _token_counter(model_path: str) -> Callable[[str], int]:
    """Tokens of the base model's tokenizer: responses are cut to a token budget."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count
