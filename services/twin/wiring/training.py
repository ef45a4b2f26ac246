"""Training's ports: the MLflow registry, the instruction generator, the judge, base models, ``TrainingDeps``.

Part of the composition root (:mod:`twin.wiring`): only it turns ``Settings`` into adapters.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from twin.settings import Settings, env_name
from twin.wiring.runtime import ensure_ray, ray_is_local
from twin.wiring.stores import feature_store

if TYPE_CHECKING:
    from twin.adapters.mlflow_store import MlflowStore
    from twin.ports import (
        InstructionGenerator,
        Judge,
        TrainingDeps,
    )


def model_registry(settings: Settings) -> MlflowStore:
    """The model registry (port :class:`twin.ports.ModelRegistry`) on MLflow: the configured
    server, or SQLite and local artifacts under ``<home>/mlflow``."""
    from twin.adapters.mlflow_store import MlflowStore

    t = settings.training
    if t.mlflow_tracking_uri:
        return MlflowStore(t.mlflow_tracking_uri, t.mlflow_artifact_root)
    root = settings.home / "mlflow"
    root.mkdir(parents=True, exist_ok=True)
    artifacts = t.mlflow_artifact_root or (root / "artifacts").as_uri()
    return MlflowStore(f"sqlite:///{root / 'mlflow.db'}", artifacts)


def _teacher_endpoint(settings: Settings, what: str) -> tuple[str, str, str | None]:
    from twin.domain.errors import InvalidSpec

    t = settings.training
    if not t.teacher_base_url or not t.teacher_model:
        url, model = env_name("training", "teacher_base_url"), env_name("training", "teacher_model")
        raise InvalidSpec(f"{what} needs {url} and {model}")
    return (
        t.teacher_base_url,
        t.teacher_model,
        t.teacher_api_key.get_secret_value() if t.teacher_api_key else None,
    )


def instruction_generator(settings: Settings) -> InstructionGenerator:
    """Offline templates (no model needed) or a teacher LLM on an OpenAI-compatible endpoint."""
    t = settings.training
    if t.generator == "teacher":
        from twin.adapters.openai_llm import TeacherInstructions

        url, model, key = _teacher_endpoint(settings, "training.generator teacher")
        return TeacherInstructions(
            url, model, api_key=key, timeout_s=t.teacher_timeout_s, concurrency=t.teacher_concurrency
        )
    from twin.domain.instructions import OfflineInstructions

    return OfflineInstructions()


def judge(settings: Settings) -> Judge | None:
    """The LLM-as-judge on the teacher endpoint, or None when judging is off."""
    t = settings.training
    if not t.judge:
        return None
    from twin.adapters.openai_llm import Judge as LlmJudge

    url, model, key = _teacher_endpoint(settings, "training.judge")
    return LlmJudge(url, model, api_key=key, timeout_s=t.teacher_timeout_s)


def base_model_path(settings: Settings, name: str) -> str:
    """A base model by hub name or local path; the bundled SmolLM2 is converted once and cached."""
    from twin.adapters.hf_models import resolve_base_model

    return resolve_base_model(name, settings.training.model_cache_dir)


def training_deps(settings: Settings) -> TrainingDeps:
    """The Train pipeline's ports (see :class:`twin.ports.TrainingDeps`). The factories are
    partials of this module's functions over ``settings``, so they pickle into Ray tasks and
    workers, which rebuild the registry and resolve the base model in their own process."""
    from twin.ports import TrainingDeps

    return TrainingDeps(
        registry=model_registry(settings),
        registry_factory=partial(model_registry, settings),
        snapshot=partial(feature_store, settings),  # cleaned documents, on a connection of its own
        generator=partial(instruction_generator, settings),
        judge=partial(judge, settings),
        resolve_model=partial(base_model_path, settings),
        connect_ray=partial(ensure_ray, settings),
        ray_local=ray_is_local(settings),
        results_dir=settings.home / "ray_results",
    )
