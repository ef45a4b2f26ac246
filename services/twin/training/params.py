"""The figures of one training run, derived from the profile's spec and the operational settings.

Pure: the dataset builder's config, the knobs that enter the run key, the parameters logged with
the run, the Ray Train worker's :class:`~twin.training.lora.LoopConfig` and the evaluation's
:class:`~twin.training.evaluate.EvalConfig`. The names here are what MLflow shows (``lora_rank``,
``plan.strategy``...): changing one changes every run's record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twin.domain.dataset import Dataset, DatasetConfig
from twin.domain.profile import TwinProfile
from twin.domain.training import TrainingPlan
from twin.ports import MetricWriter
from twin.settings import TrainingSettings
from twin.training.evaluate import EvalConfig
from twin.training.lora import LoopConfig


def dataset_config(config: TrainingSettings) -> DatasetConfig:
    """How documents become samples (all of it is part of the dataset version id)."""
    return DatasetConfig(
        heldout_fraction=config.heldout_fraction,
        seed=config.split_seed,
        min_response_chars=config.min_response_chars,
        max_response_tokens=config.max_response_tokens,
    )


def knobs(config: TrainingSettings) -> dict[str, Any]:
    """The operational settings that change what a run produces: part of its run key."""
    return {"max_steps": config.max_steps, "seed": config.seed, "cpu_workers": config.cpu_workers}


def dataset_params(
    profile: TwinProfile, generator: str, generator_config: dict[str, Any], config: DatasetConfig
) -> dict[str, Any]:
    """The parameters stored with a dataset version: who built it, how, with which tokenizer."""
    return {
        "profile": profile.name,
        "generator": generator,
        **{f"generator.{k}": v for k, v in generator_config.items()},
        **{f"dataset.{k}": v for k, v in config.__dict__.items()},
        "tokenizer": profile.spec.base_model,
    }


def run_params(
    profile: TwinProfile, config: TrainingSettings, plan: TrainingPlan, dataset: Dataset
) -> dict[str, Any]:
    """The parameters logged with a training run."""
    spec, lora = profile.spec, profile.spec.training.lora
    return {
        "base_model": spec.base_model,
        "dataset_version": dataset.version,
        "lora_rank": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "lora_target_modules": ",".join(lora.target_modules),
        "learning_rate": spec.training.learning_rate,
        "epochs": spec.training.epochs,
        "max_length": spec.training.max_length,
        "batch_size": spec.training.batch_size,
        "gradient_accumulation_steps": spec.training.gradient_accumulation_steps,
        "warmup_ratio": spec.training.warmup_ratio,
        "max_steps": config.max_steps,
        "seed": config.seed,
        **{f"plan.{k}": v for k, v in plan.to_json().items()},
    }


def loop_config(
    profile: TwinProfile,
    config: TrainingSettings,
    plan: TrainingPlan,
    dataset: Dataset,
    *,
    key: str,
    threads: int,
    resolve_model: Callable[[str], str],
    metrics: MetricWriter | None,
) -> LoopConfig:
    """What every Ray Train worker runs with (plain data plus two picklable callables)."""
    spec, lora = profile.spec, profile.spec.training.lora
    return LoopConfig(
        base_model=spec.base_model,
        resolve_model=resolve_model,
        owner=spec.owner.display_name,
        samples=[s.to_json() for s in dataset.train],
        plan=plan.to_json(),
        lora_rank=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        learning_rate=spec.training.learning_rate,
        epochs=spec.training.epochs,
        max_length=spec.training.max_length,
        batch_size=spec.training.batch_size,
        gradient_accumulation_steps=spec.training.gradient_accumulation_steps,
        warmup_ratio=spec.training.warmup_ratio,
        max_steps=config.max_steps,
        seed=config.seed,
        log_every=config.log_every_steps,
        threads=threads,
        metrics=metrics,
        extra={"run_key": key},
    )


def eval_config(profile: TwinProfile, config: TrainingSettings, *, threads: int) -> EvalConfig:
    """How the held-out evaluation runs (sample caps, generation length, threads)."""
    return EvalConfig(
        owner=profile.spec.owner.display_name,
        max_length=profile.spec.training.max_length,
        batch_size=config.eval_batch_size,
        max_samples=config.eval_max_samples,
        style_samples=config.style_samples,
        max_new_tokens=config.style_max_new_tokens,
        threads=threads,
    )
