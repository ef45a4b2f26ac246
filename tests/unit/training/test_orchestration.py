"""The Train pipeline's pieces that need no model and no Ray: the promotion gate on an evaluation
report, the figures a run and a version are filed with, registration and promotion through the
registry port, and the retraining policy on the training snapshot.

Registry work runs on :class:`support.fake_registry.FakeRegistry`; the same contract is checked
on real MLflow in ``tests/integration/test_train.py``, and the whole pipeline runs there too.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from support.fake_registry import FakeRegistry, check_registry_contract
from twin.demo.corpus import demo_documents
from twin.domain.dataset import Dataset, DatasetConfig, build_dataset
from twin.domain.errors import InvalidSpec
from twin.domain.features import CleanedDocument
from twin.domain.instructions import OfflineInstructions
from twin.domain.profile import parse_profile
from twin.domain.registry import CANDIDATE, CHAMPION, ModelVersionInfo
from twin.domain.training import Hardware, PromotionDecision, plan_training
from twin.ports import TrainingDeps
from twin.settings import TrainingSettings
from twin.training import params
from twin.training.evaluate import BASE, EvalReport, ModelScores
from twin.training.pipeline import promote, retrain_needed
from twin.training.registration import gate, register, version_figures

DOCS = [doc for _, doc in demo_documents()]
PROFILE = parse_profile(
    {
        "apiVersion": "llmtwin.dev/v1alpha1",
        "kind": "TwinProfile",
        "metadata": {"name": "alice"},
        "spec": {"owner": {"displayName": "Alice Moreau"}, "sources": [{"url": "https://a.dev"}]},
    }
)


def dataset(docs: list[CleanedDocument] = DOCS) -> Dataset:
    return build_dataset(
        "alice",
        "Alice Moreau",
        docs,
        generator=OfflineInstructions(),
        count_tokens=lambda t: len(t.split()),
        config=DatasetConfig(),
    )


def report(candidate: float, base: float, champion: float | None = None) -> EvalReport:
    scores = {BASE: ModelScores(base, 0.0, 10), CANDIDATE: ModelScores(candidate, 0.0, 10, 0.5)}
    if champion is not None:
        scores["champion"] = ModelScores(champion, 0.0, 10)
    return EvalReport(samples=4, scores=scores, references=[], instructions=[], seconds=1.0)


def champion_on(base_model: str) -> ModelVersionInfo:
    return ModelVersionInfo(
        "alice", 3, "run-3", "runs:/run-3/adapter", (CHAMPION,), {"base_model": base_model}
    )


@pytest.fixture
def adapter(tmp_path: Path) -> Path:
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "adapter_config.json").write_text('{"r": 4}')
    (out / "adapter_model.safetensors").write_bytes(b"\0" * 32)
    return out


def test_the_fake_registry_meets_the_registry_contract(adapter: Path, tmp_path: Path) -> None:
    check_registry_contract(FakeRegistry(), dataset(), adapter, tmp_path / "scratch")


def test_the_gate_wants_the_base_model_beaten_and_a_comparable_champion_beaten_by_the_margin() -> None:
    base_model = PROFILE.spec.base_model
    assert gate(report(5.0, 6.0), None, base_model, 0.01) == PromotionDecision(
        True, "there is no champion yet"
    )
    worse = gate(report(6.5, 6.0), None, base_model, 0.01)
    assert not worse.promote and "not below the base model's 6.000" in worse.reason
    other = gate(report(5.0, 6.0, champion=9.0), champion_on("other/model"), base_model, 0.01)
    assert not other.promote and "promote by hand" in other.reason
    assert gate(report(5.0, 6.0, champion=5.5), champion_on(base_model), base_model, 0.01).promote
    assert not gate(report(5.0, 6.0, champion=5.02), champion_on(base_model), base_model, 0.01).promote


def test_a_version_is_filed_with_its_lineage_and_figures() -> None:
    ds = dataset()
    decision = PromotionDecision(True, "there is no champion yet")
    figures = version_figures(
        base_model="m", key="tr-1", dataset=ds, report=report(5.0, 6.0), decision=decision
    )
    assert figures == {
        "dataset_version": ds.version,
        "base_model": "m",
        "run_key": "tr-1",
        "heldout_ppl": 5.0,
        "heldout_ppl_base": 6.0,
        "style_fidelity": 0.5,
        "style_fidelity_base": "",
        "gate": "there is no champion yet",
    }


def test_run_parameters_keep_their_names() -> None:
    plan = plan_training(PROFILE.spec.training, Hardware(gpus=0))
    ds = dataset()
    run = params.run_params(PROFILE, TrainingSettings(max_steps=8), plan, ds)
    assert set(run) == {
        "base_model", "dataset_version", "lora_rank", "lora_alpha", "lora_dropout", "lora_target_modules",
        "learning_rate", "epochs", "max_length", "batch_size", "gradient_accumulation_steps",
        "warmup_ratio", "max_steps", "seed", *(f"plan.{k}" for k in plan.to_json()),
    }  # fmt: skip
    assert run["max_steps"] == 8 and run["dataset_version"] == ds.version
    built = params.dataset_params(PROFILE, "offline", {"templates": 1}, DatasetConfig())
    assert built["generator.templates"] == 1 and built["dataset.heldout_fraction"] == 0.2
    assert built["tokenizer"] == PROFILE.spec.base_model
    assert params.knobs(TrainingSettings(max_steps=3)) == {"max_steps": 3, "seed": 42, "cpu_workers": 1}


def test_the_worker_config_crosses_process_boundaries() -> None:
    from twin.adapters.mlflow_runs import RunMetricWriter

    plan = plan_training(PROFILE.spec.training, Hardware(gpus=0))
    loop = params.loop_config(
        PROFILE,
        TrainingSettings(),
        plan,
        dataset(),
        key="tr-1",
        threads=2,
        resolve_model=partial(str.strip),
        metrics=RunMetricWriter("sqlite:////nonexistent/mlflow.db", "run-1"),
    )
    copy = pickle.loads(pickle.dumps(loop.to_dict()))
    assert copy["resolve_model"](" m ") == "m" and copy["metrics"].run_id == "run-1"
    assert copy["threads"] == 2 and copy["extra"] == {"run_key": "tr-1"}


def test_registration_aliases_the_candidate_and_promotes_only_when_told(adapter: Path) -> None:
    registry = FakeRegistry()
    for promote_it in (True, False):
        with registry.training_run("alice", f"k-{promote_it}", params={}, tags={}) as run:
            run.log_adapter(adapter)
            _, promoted = register(registry, run, "alice", {"base_model": "m"}, promote=promote_it)
        assert promoted is promote_it and registry.runs[run.run_id].tags["twin.promoted"] == str(promote_it)
    assert [(v.version, v.aliases) for v in registry.versions("alice")] == [
        (1, (CHAMPION,)),
        (2, (CANDIDATE,)),
    ]
    assert registry.version("alice", 1).tags["promoted_by"] == "gate"


def test_promote_moves_the_champion_to_the_candidate_or_back_to_any_version(adapter: Path) -> None:
    registry = FakeRegistry()
    with pytest.raises(InvalidSpec, match="no candidate model"):
        promote(registry, "alice")
    for key in ("k1", "k2"):
        with registry.training_run("alice", key, params={}, tags={}) as run:
            registry.register("alice", run.run_id, {}, aliases=[CANDIDATE])
    assert promote(registry, "alice") == (None, 2)
    assert promote(registry, "alice", 1) == (2, 1)
    assert registry.version("alice", 1).tags["promoted_by"] == "manual"
    with pytest.raises(InvalidSpec, match="no model version 7"):
        promote(registry, "alice", 7)


def _deps(registry: FakeRegistry, documents: list[CleanedDocument]) -> TrainingDeps:
    class Snapshot:
        def cleaned_documents(self, profile: str) -> list[CleanedDocument]:
            return [d for d in documents if d.profile == profile]

    @contextmanager
    def snapshot() -> Iterator[Snapshot]:
        yield Snapshot()

    def unused(*args: Any) -> Any:
        raise AssertionError("the retraining policy needs only the registry and the snapshot")

    return TrainingDeps(
        registry=registry,
        registry_factory=unused,
        snapshot=snapshot,
        generator=unused,
        judge=unused,
        resolve_model=unused,
        connect_ray=unused,
        ray_local=True,
        results_dir=Path("unused"),
    )


def test_retraining_waits_for_enough_changed_documents() -> None:
    registry = FakeRegistry()
    assert retrain_needed(_deps(registry, DOCS), "alice", min_changed_documents=2).retrain  # no model yet
    ds = dataset()
    dataset_id = registry.save_dataset(ds, {})
    with registry.training_run("alice", "k", params={}, tags={}, dataset=ds, dataset_id=dataset_id) as run:
        registry.register("alice", run.run_id, {}, aliases=[CANDIDATE])
    assert not retrain_needed(_deps(registry, DOCS), "alice", min_changed_documents=2).retrain
    one = [dataclasses.replace(DOCS[0], raw_content_hash="edited"), *DOCS[1:]]
    assert not retrain_needed(_deps(registry, one), "alice", min_changed_documents=2).retrain
    two = [*one[:1], dataclasses.replace(DOCS[1], raw_content_hash="edited"), *DOCS[2:]]
    assert retrain_needed(_deps(registry, two), "alice", min_changed_documents=2).retrain
