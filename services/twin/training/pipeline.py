"""``twin train``: dataset version → Ray Train LoRA run → evaluation → registry → promotion.

Order of work, and what stops it early:

1. resolve the base model (an unknown path, or LoRA target modules it does not have, is an
   :class:`InvalidSpec`);
2. read the profile's cleaned documents and build the dataset version (nothing to train on or
   nothing to hold out is :class:`InsufficientData`), then plan the run for the hardware Ray
   offers (impossible combinations are :class:`InvalidSpec` too); store the dataset in MLflow
   unless that version is stored already;
3. derive the run key (dataset, base model, spec, knobs); a finished run with that key means the
   work is done: nothing is trained (``twin train`` is idempotent);
4. train on Ray Train (:mod:`twin.training.lora`), log the adapter, evaluate base, candidate and
   (same base model only) champion on the held-out samples as one Ray task;
5. register the adapter as a new version, alias ``candidate``; alias ``champion`` when the gate
   (:func:`twin.domain.training.promotion_decision`) says so.

Steps 1-3 happen before any MLflow run exists, so bad input registers nothing.
"""

from __future__ import annotations

import logging
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin.adapters.mlflow_store import CANDIDATE, CHAMPION, MlflowStore, ModelVersionInfo
from twin.domain.dataset import Dataset, DatasetConfig, InstructionGenerator, build_dataset
from twin.domain.errors import InvalidSpec
from twin.domain.profile import TwinProfile
from twin.domain.training import (
    Hardware,
    PromotionDecision,
    RetrainDecision,
    TrainingPlan,
    plan_training,
    promotion_decision,
    retraining_decision,
    run_key,
)
from twin.settings import Settings
from twin.training.evaluate import BASE, EvalConfig, EvalReport

log = logging.getLogger(__name__)

Stage = Callable[[str], None]
Step = Callable[[int, int, float], None]


@dataclass
class TrainOutcome:
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


def mlflow_store(settings: Settings) -> MlflowStore:
    """The MLflow store the settings name; the embedded default is SQLite under ``<home>/mlflow``."""
    t = settings.training
    if t.mlflow_tracking_uri:
        return MlflowStore(t.mlflow_tracking_uri, t.mlflow_artifact_root)
    root = settings.home / "mlflow"
    root.mkdir(parents=True, exist_ok=True)
    artifacts = t.mlflow_artifact_root or (root / "artifacts").as_uri()
    return MlflowStore(f"sqlite:///{root / 'mlflow.db'}", artifacts)


def instruction_generator(settings: Settings) -> InstructionGenerator:
    t = settings.training
    if t.generator == "teacher":
        if not t.teacher_base_url or not t.teacher_model:
            raise InvalidSpec(
                "training.generator teacher needs TWIN_TRAINING__TEACHER_BASE_URL and ..._TEACHER_MODEL"
            )
        from twin.adapters.openai_llm import TeacherInstructions

        return TeacherInstructions(
            t.teacher_base_url,
            t.teacher_model,
            api_key=t.teacher_api_key.get_secret_value() if t.teacher_api_key else None,
            timeout_s=t.teacher_timeout_s,
            concurrency=t.teacher_concurrency,
        )
    from twin.domain.instructions import OfflineInstructions

    return OfflineInstructions()


def dataset_config(settings: Settings) -> DatasetConfig:
    t = settings.training
    return DatasetConfig(
        heldout_fraction=t.heldout_fraction,
        seed=t.split_seed,
        min_response_chars=t.min_response_chars,
        max_response_tokens=t.max_response_tokens,
    )


def load_documents(settings: Settings, profile: str) -> list[Any]:
    from twin.adapters.pgvector_store import PgFeatureStore
    from twin.adapters.postgres import connect, migrate
    from twin.store import database_dsn

    with connect(database_dsn(settings), connect_timeout_s=settings.database.connect_timeout_s) as conn:
        migrate(conn)
        return PgFeatureStore(conn).cleaned_documents(profile)


def resolve_model(settings: Settings, name: str) -> str:
    from twin.adapters.hf_models import resolve_base_model

    return resolve_base_model(name, settings.training.model_cache_dir)


def _token_counter(model_path: str) -> Callable[[str], int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


def build_profile_dataset(
    profile: TwinProfile, settings: Settings, model_path: str
) -> tuple[Dataset, dict[str, Any]]:
    """The profile's dataset version from the feature store (not stored anywhere yet)."""
    generator = instruction_generator(settings)
    config = dataset_config(settings)
    documents = load_documents(settings, profile.name)
    dataset = build_dataset(
        profile.name,
        profile.spec.owner.display_name,
        documents,
        generator=generator,
        count_tokens=_token_counter(model_path),
        config=config,
    )
    params = {
        "profile": profile.name,
        "generator": generator.name,
        **{f"generator.{k}": v for k, v in generator.config().items()},
        **{f"dataset.{k}": v for k, v in config.__dict__.items()},
        "tokenizer": profile.spec.base_model,
    }
    return dataset, params


def ensure_dataset(store: MlflowStore, dataset: Dataset, params: dict[str, Any]) -> str:
    """The run id of the stored dataset version, storing it first if it is new."""
    return store.find_dataset(dataset.profile, dataset.version) or store.save_dataset(dataset, params)


def detect_hardware(settings: Settings) -> Hardware:
    """GPUs the Ray cluster offers (the driver may have none), bf16 and bitsandbytes support."""
    import importlib.util

    import ray

    from twin.features.embedding import ensure_ray

    ensure_ray(settings.training.ray_address)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    bf16 = False
    if gpus:
        import torch

        # The driver may have no GPU of its own: cluster GPUs are assumed recent (bf16) unless seen otherwise.
        bf16 = bool(torch.cuda.is_bf16_supported()) if torch.cuda.is_available() else True
    return Hardware(gpus=gpus, bf16=bf16, bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None)


def _knobs(settings: Settings) -> dict[str, Any]:
    t = settings.training
    return {"max_steps": t.max_steps, "seed": t.seed, "cpu_workers": t.cpu_workers}


def system_info(plan: TrainingPlan) -> dict[str, str]:
    import os

    import peft
    import ray
    import torch
    import transformers

    info = {
        "system.python": sys.version.split()[0],
        "system.platform": platform.platform(),
        "system.cpu_count": str(os.cpu_count()),
        "system.torch": torch.__version__,
        "system.transformers": transformers.__version__,
        "system.peft": peft.__version__,
        "system.ray": ray.__version__,
        "system.device": "cuda" if plan.use_gpu else "cpu",
    }
    if torch.cuda.is_available():
        info["system.gpu"] = torch.cuda.get_device_name(0)
    return info


def worker_cpus(settings: Settings) -> int:
    """CPUs (torch threads) per worker; on a local Ray, never more than the machine has (a request
    no node can meet would wait forever). A cluster may autoscale, so its request stands."""
    import ray

    wanted = settings.training.cpus_per_worker
    if settings.training.ray_address:
        return wanted
    return max(1, min(wanted, int(ray.cluster_resources().get("CPU", 1))))


def _fit(config: dict[str, Any], plan: TrainingPlan, settings: Settings, on_step: Step | None) -> Any:
    """Run the TorchTrainer; progress from rank 0 arrives over a Ray queue."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Empty, Queue

    from twin.features.embedding import ensure_ray
    from twin.training.lora import train_loop_per_worker

    ensure_ray(settings.training.ray_address)
    queue: Any = Queue() if on_step is not None else None
    config["progress"] = queue
    done = threading.Event()

    def pump() -> None:
        while not done.is_set():
            try:
                _, step, total, loss = queue.get(timeout=0.5)
            except Empty:
                continue
            except Exception:  # the queue actor went away with the run
                return
            if on_step is not None:
                on_step(step, total, loss)

    reader = threading.Thread(target=pump, name="train-progress", daemon=True)
    if queue is not None:
        reader.start()
    cpus = worker_cpus(settings)
    config["threads"] = cpus
    resources: dict[str, float] = {"CPU": cpus}
    if plan.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=plan.num_workers, use_gpu=plan.use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=f"{config['extra']['run_key']}-{int(time.time())}",
            storage_path=str((settings.home / "ray_results").resolve()),
        ),
    )
    try:
        result = trainer.fit()
    except Exception as exc:
        # Ray wraps a worker's exception; surface the worker's own error (an InvalidSpec stays one).
        cause = exc.__cause__
        if isinstance(cause, Exception):
            raise cause from exc
        raise
    finally:
        done.set()
        if queue is not None:
            reader.join(5)
            queue.shutdown()
    error = getattr(result, "error", None)
    if isinstance(error, BaseException):
        raise error
    return result


def _evaluate_task(
    *,
    tracking_uri: str,
    model_name: str,
    cache_dir: str,
    adapters: dict[str, str],
    heldout: list[dict[str, Any]],
    config: EvalConfig,
    dtype: str,
    style_for: list[str],
) -> EvalReport:
    """Evaluation where the cluster has room for it: adapters fetched from MLflow by run id."""
    from twin.adapters.hf_models import resolve_base_model
    from twin.domain.dataset import Sample
    from twin.training.evaluate import evaluate

    store = MlflowStore(tracking_uri)
    base = resolve_base_model(model_name, Path(cache_dir))
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {
            name: str(Path(store.client.download_artifacts(run_id, "adapter", f"{tmp}/{name}")))
            for name, run_id in adapters.items()
        }
        return evaluate(
            base, dirs, [Sample.from_json(s) for s in heldout], config, dtype=dtype, style_for=style_for
        )


def _evaluate(
    *,
    store: MlflowStore,
    settings: Settings,
    profile: TwinProfile,
    dataset: Dataset,
    plan: TrainingPlan,
    adapters: dict[str, str],
) -> EvalReport:
    import ray

    t = settings.training
    config = EvalConfig(
        owner=profile.spec.owner.display_name,
        max_length=profile.spec.training.max_length,
        batch_size=t.eval_batch_size,
        max_samples=t.eval_max_samples,
        style_samples=t.style_samples,
        max_new_tokens=t.style_max_new_tokens,
        threads=worker_cpus(settings),
    )
    remote: Any = ray.remote(num_cpus=worker_cpus(settings), num_gpus=1 if plan.use_gpu else 0)
    task: Any = remote(_evaluate_task)
    report: EvalReport = ray.get(
        task.remote(
            tracking_uri=store.tracking_uri,
            model_name=profile.spec.base_model,
            cache_dir=str(t.model_cache_dir),
            adapters=adapters,
            heldout=[s.to_json() for s in dataset.heldout],
            config=config,
            dtype=plan.dtype if plan.use_gpu else "float32",
            style_for=[BASE, CANDIDATE],
        )
    )
    return report


def _judge(settings: Settings, report: EvalReport) -> float | None:
    t = settings.training
    if not t.judge:
        return None
    if not t.teacher_base_url or not t.teacher_model:
        raise InvalidSpec(
            "training.judge needs TWIN_TRAINING__TEACHER_BASE_URL and TWIN_TRAINING__TEACHER_MODEL"
        )
    from twin.adapters.openai_llm import Judge

    judge = Judge(
        t.teacher_base_url,
        t.teacher_model,
        api_key=t.teacher_api_key.get_secret_value() if t.teacher_api_key else None,
        timeout_s=t.teacher_timeout_s,
    )
    return judge.score(report.references, report.scores[CANDIDATE].generations)


def gate(
    report: EvalReport, champion: ModelVersionInfo | None, base_model: str, margin: float
) -> PromotionDecision:
    """The promotion decision for the candidate in ``report`` (see the module docstring)."""
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


def _run_params(
    profile: TwinProfile, settings: Settings, plan: TrainingPlan, dataset: Dataset
) -> dict[str, Any]:
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
        "max_steps": settings.training.max_steps,
        "seed": settings.training.seed,
        **{f"plan.{k}": v for k, v in plan.to_json().items()},
    }


def _loop_config(
    profile: TwinProfile,
    settings: Settings,
    plan: TrainingPlan,
    dataset: Dataset,
    *,
    key: str,
    run: str,
    uri: str,
) -> dict[str, Any]:
    from twin.training.lora import LoopConfig

    spec, t, lora = profile.spec, settings.training, profile.spec.training.lora
    return LoopConfig(
        base_model=spec.base_model,
        model_cache_dir=str(t.model_cache_dir),
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
        max_steps=t.max_steps,
        seed=t.seed,
        log_every=t.log_every_steps,
        threads=t.cpus_per_worker,
        tracking_uri=uri,
        run_id=run,
        extra={"run_key": key},
    ).to_dict()


def _already_trained(store: MlflowStore, profile: str, dataset: Dataset, existing: Any) -> TrainOutcome:
    version = int(existing.data.tags["twin.model_version"])
    return TrainOutcome(
        profile,
        dataset.version,
        trained=False,
        reason=f"dataset {dataset.version} was trained with this config (run {existing.info.run_id})",
        run_id=existing.info.run_id,
        version=version,
        promoted=CHAMPION in store.version(profile, version).aliases,
        metrics={k: float(v) for k, v in existing.data.metrics.items()},
        dataset_stats=dict(dataset.stats.__dict__),
    )


def _register(
    store: MlflowStore,
    profile: TwinProfile,
    settings: Settings,
    *,
    run_id: str,
    key: str,
    dataset: Dataset,
    report: EvalReport,
    decision: PromotionDecision,
) -> tuple[ModelVersionInfo, bool]:
    """Register the candidate, alias it, and make it champion when the gate (and settings) allow."""
    info = store.register_adapter(
        profile.name,
        run_id,
        {
            "dataset_version": dataset.version,
            "base_model": profile.spec.base_model,
            "run_key": key,
            "heldout_ppl": report.scores[CANDIDATE].perplexity,
            "heldout_ppl_base": report.scores[BASE].perplexity,
            "style_fidelity": report.scores[CANDIDATE].style_fidelity or "",
            "style_fidelity_base": report.scores[BASE].style_fidelity or "",
            "gate": decision.reason,
        },
    )
    store.set_alias(profile.name, CANDIDATE, info.version)
    promoted = decision.promote and settings.training.auto_promote
    if promoted:
        store.set_alias(profile.name, CHAMPION, info.version)
        store.tag_version(profile.name, info.version, {"promoted_by": "gate", "promoted_at": _now()})
    store.set_tags(run_id, {"twin.model_version": info.version, "twin.promoted": promoted})
    return info, promoted


def train_profile(
    profile: TwinProfile,
    settings: Settings,
    *,
    on_stage: Stage = lambda s: None,
    on_step: Step | None = None,
    force: bool = False,
) -> TrainOutcome:
    """Train (or find already trained) the adapter for the profile's current data."""
    spec = profile.spec
    on_stage(f"resolving base model {spec.base_model}")
    model_path = resolve_model(settings, spec.base_model)
    from twin.training.lora import check_model

    check_model(model_path, list(spec.training.lora.target_modules))
    on_stage("building the dataset version")
    dataset, params = build_profile_dataset(profile, settings, model_path)
    store = mlflow_store(settings)
    dataset_run = ensure_dataset(store, dataset, params)
    key = run_key(dataset.version, spec.base_model, spec.training, _knobs(settings))
    existing = None if force else store.find_training_run(profile.name, key)
    if existing is not None:
        return _already_trained(store, profile.name, dataset, existing)
    on_stage("planning the run")
    plan = plan_training(spec.training, detect_hardware(settings), cpu_workers=settings.training.cpu_workers)

    tags = {"twin.dataset_version": dataset.version, "twin.dataset_run_id": dataset_run, **system_info(plan)}
    with store.training_run(profile.name, key, tags) as run_id:
        store.log_params(run_id, _run_params(profile, settings, plan, dataset))
        store.dataset_input(run_id, dataset_run, dataset)
        on_stage(f"training on Ray Train ({plan.num_workers} {'GPU' if plan.use_gpu else 'CPU'} worker(s))")
        config = _loop_config(profile, settings, plan, dataset, key=key, run=run_id, uri=store.tracking_uri)
        result = _fit(config, plan, settings, on_step)
        with result.checkpoint.as_directory() as adapter_dir:
            store.log_artifacts(run_id, Path(adapter_dir), "adapter")
        metrics = {k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)}

        on_stage("evaluating on held-out writing")
        champion = store.by_alias(profile.name, CHAMPION)
        adapters = {CANDIDATE: run_id}
        if champion is not None and champion.base_model == spec.base_model:
            adapters["champion"] = champion.run_id
        report = _evaluate(
            store=store, settings=settings, profile=profile, dataset=dataset, plan=plan, adapters=adapters
        )
        metrics.update(report.metrics())
        judge = _judge(settings, report)
        if judge is not None:
            metrics["judge_score"] = judge
        store.log_metrics(run_id, {k: v for k, v in metrics.items() if not k.startswith("run_")})
        generations = {name: s.generations for name, s in report.scores.items()}
        store.log_json(
            run_id,
            {
                "instructions": report.instructions,
                "references": report.references,
                "generations": generations,
            },
            "eval/generations.json",
        )
        decision = gate(report, champion, spec.base_model, settings.training.promotion_margin)
        on_stage("registering the adapter")
        info, promoted = _register(
            store,
            profile,
            settings,
            run_id=run_id,
            key=key,
            dataset=dataset,
            report=report,
            decision=decision,
        )
    return TrainOutcome(
        profile.name,
        dataset.version,
        trained=True,
        reason="trained",
        run_id=run_id,
        version=info.version,
        promoted=promoted,
        promotion_reason=decision.reason if settings.training.auto_promote else "auto-promotion is off",
        metrics=metrics,
        dataset_stats=dict(dataset.stats.__dict__),
    )


def promote(settings: Settings, profile: str, version: int | None = None) -> tuple[int | None, int]:
    """Move ``champion`` to ``version`` (a rollback, or any registered version), or to the current
    candidate when no version is given. Returns (previous champion, new champion)."""
    store = mlflow_store(settings)
    if version is None:
        candidate = store.by_alias(profile, CANDIDATE)
        if candidate is None:
            raise InvalidSpec(f"profile {profile!r} has no candidate model to promote: run twin train first")
        target = candidate
    else:
        target = store.version(profile, version)
    previous = store.by_alias(profile, CHAMPION)
    store.set_alias(profile, CHAMPION, target.version)
    store.tag_version(profile, target.version, {"promoted_by": "manual", "promoted_at": _now()})
    return (previous.version if previous else None), target.version


def retrain_needed(settings: Settings, profile: str) -> RetrainDecision:
    """The continuous-training policy on the stored documents vs the newest trained dataset."""
    store = mlflow_store(settings)
    candidate = store.by_alias(profile, CANDIDATE)
    trained_on: dict[str, str] | None = None
    if candidate is not None:
        run = store.client.get_run(candidate.run_id)
        dataset = store.load_dataset(run.data.tags["twin.dataset_run_id"])
        trained_on = dict(dataset.documents)
    current = {str(d.id): d.raw_content_hash for d in load_documents(settings, profile)}
    return retraining_decision(
        trained_on, current, min_changed_documents=settings.training.retrain_min_changed_documents
    )


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")
