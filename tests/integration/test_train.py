"""Training end to end on real services: the sample owner's cleaned documents in the real Postgres,
``twin train`` in a subprocess (real Ray Train on CPU, real SmolLM2-135M-Instruct converted from the
bundled GGUF, real transformers + peft), MLflow on SQLite, then the registry, the promotion gate,
manual promotion, rollback, idempotence, and every bad configuration registering nothing; and the
registry port's contract on real MLflow, call by call.

The runs are short (a few optimizer steps on 160-token samples) because a 2-core CPU trains SmolLM2
at ~80 tokens/s; short is enough for the adapter to beat the base model on held-out writing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from support.processes import run_twin
from support.twin_cli import SAMPLE_PROFILE, TwinRun
from twin.adapters.mlflow_store import MlflowStore
from twin.adapters.pgvector_store import PgFeatureStore
from twin.adapters.postgres import connect, migrate
from twin.demo.corpus import demo_documents

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

PROFILE = "trainee"
SHORT_RUN = {"maxLength": 160, "batchSize": 4, "learningRate": 0.001}


def _profile(path: Path, name: str = PROFILE, base_model: str | None = None, **training: Any) -> Path:
    data = yaml.safe_load(SAMPLE_PROFILE.read_text())
    data["metadata"]["name"] = name
    data["spec"]["training"] = {**SHORT_RUN, **training}
    if base_model:
        data["spec"]["baseModel"] = base_model
    key = json.dumps([base_model, training], sort_keys=True)
    out = path / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:8]}.yaml"
    out.write_text(yaml.safe_dump(data))
    return out


@pytest.fixture(scope="module")
def seeded(pg_dsn: str) -> Iterator[str]:
    """The sample owner's writing as cleaned documents of PROFILE (plus a one-document profile)."""
    import dataclasses

    docs = [doc for _, doc in demo_documents()]
    with connect(pg_dsn) as conn:
        migrate(conn)
        conn.execute("DELETE FROM cleaned_documents WHERE profile IN (%s, 'solo')", (PROFILE,))
        conn.commit()
        store = PgFeatureStore(conn)
        store.apply([(dataclasses.replace(d, profile=PROFILE), []) for d in docs], [])
        solo = dataclasses.replace(docs[0], profile="solo")
        store.apply([(solo, [])], [])
    yield pg_dsn


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("train-home")


@pytest.fixture(scope="module")
def twin(seeded: str, home: Path) -> Callable[..., TwinRun]:
    env = {
        "TWIN_DATABASE__DSN": seeded,
        "TWIN_HOME": str(home),
        "TWIN_TRAINING__MAX_STEPS": "8",
        "TWIN_TRAINING__CPUS_PER_WORKER": "2",
        "TWIN_TRAINING__STYLE_SAMPLES": "2",
        "TWIN_TRAINING__STYLE_MAX_NEW_TOKENS": "40",
        "TWIN_TRAINING__EVAL_MAX_SAMPLES": "24",
    }

    def run(*args: str, extra: dict[str, str] | None = None, timeout: float = 800) -> TwinRun:
        proc = run_twin(*args, env={**env, **(extra or {})}, cwd=home, timeout=timeout)
        return TwinRun(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture(scope="module")
def store(home: Path) -> MlflowStore:
    return MlflowStore(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")


def _json(run: TwinRun) -> Any:
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def first(twin: Callable[..., TwinRun], home: Path) -> dict[str, Any]:
    outcome: dict[str, Any] = _json(twin("train", "-p", str(_profile(home)), "--json"))
    return outcome


def test_trains_evaluates_registers_and_promotes(first: dict[str, Any], store: MlflowStore) -> None:
    assert first["trained"] and first["version"] == 1 and first["promoted"], first
    m = first["metrics"]
    # The adapter learned the owner's voice: lower perplexity on writing it never saw.
    assert m["heldout_ppl_candidate"] < m["heldout_ppl_base"], m
    assert 0.0 <= m["style_fidelity_candidate"] <= 1.0
    champion = store.by_alias(PROFILE, "champion")
    assert champion is not None and champion.version == 1 and "candidate" in champion.aliases
    assert champion.dataset_version == first["dataset_version"]
    assert champion.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert float(champion.tags["heldout_ppl"]) == pytest.approx(m["heldout_ppl_candidate"])


def test_the_mlflow_run_holds_metrics_artifacts_and_lineage(
    first: dict[str, Any], store: MlflowStore, seeded: str, tmp_path: Path
) -> None:
    run = store.client.get_run(first["run_id"])
    assert run.info.status == "FINISHED"
    assert (
        run.data.params["lora_rank"] == "16"
        and run.data.params["dataset_version"] == first["dataset_version"]
    )
    assert run.data.tags["system.torch"].startswith("2.") and run.data.tags["system.device"] == "cpu"
    losses = store.metric_history(first["run_id"], "train_loss")
    assert [s for s, _ in losses] == list(range(1, 9))  # every step, logged from the Ray Train worker
    for key in ("heldout_ppl_base", "heldout_ppl_candidate", "style_fidelity_base", "tokens_per_s"):
        assert key in run.data.metrics, key
    inputs = run.inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == [first["dataset_version"]]
    adapter = store.download_adapter(store.version(PROFILE, 1), tmp_path)
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    path = store.client.download_artifacts(first["run_id"], "eval/generations.json", str(tmp_path))
    generations = json.loads(Path(path).read_text())
    assert len(generations["generations"]["candidate"]) == 2

    # Lineage: every sample of the dataset version resolves to a stored document and its hash.
    dataset = store.load_dataset(run.data.tags["twin.dataset_run_id"])
    assert dataset.version == first["dataset_version"]
    assert store.trained_dataset(store.version(PROFILE, 1)) == dataset
    with psycopg.connect(seeded) as conn:
        stored = dict(
            conn.execute(
                "SELECT id, raw_content_hash FROM cleaned_documents WHERE profile = %s", (PROFILE,)
            ).fetchall()
        )
    assert dataset.samples and all(stored[s.document_id] == s.content_hash for s in dataset.samples)
    held = {s.document_id for s in dataset.heldout}
    assert held and not held & {s.document_id for s in dataset.train}


def test_a_second_run_on_unchanged_data_trains_nothing(
    first: dict[str, Any], twin: Callable[..., TwinRun], home: Path, store: MlflowStore
) -> None:
    runs_before = len(store.client.search_runs([store.experiment_id(PROFILE)]))
    again = _json(twin("train", "-p", str(_profile(home)), "--json"))
    assert (
        not again["trained"]
        and again["version"] == 1
        and again["dataset_version"] == first["dataset_version"]
    )
    assert "was trained" in again["reason"]
    assert len(store.client.search_runs([store.experiment_id(PROFILE)])) == runs_before
    policy = _json(twin("train", "-p", str(_profile(home)), "--if-needed", "--json"))
    assert not policy["trained"] and "only 0 document" in policy["reason"]


def test_the_gate_refuses_a_worse_candidate_then_promote_and_roll_back(
    first: dict[str, Any], twin: Callable[..., TwinRun], home: Path, store: MlflowStore
) -> None:
    # A learning rate that wrecks the adapter: a real, genuinely worse candidate.
    worse = _json(
        twin(
            "train",
            "-p",
            str(_profile(home, learningRate=0.5)),
            "--json",
            extra={"TWIN_TRAINING__MAX_STEPS": "3"},
        )
    )
    assert worse["trained"] and worse["version"] == 2 and not worse["promoted"], worse
    assert (
        "not below the base model" in worse["promotion_reason"]
        or "does not beat" in worse["promotion_reason"]
    )
    assert store.by_alias(PROFILE, "champion").version == 1  # type: ignore[union-attr]
    assert store.by_alias(PROFILE, "candidate").version == 2  # type: ignore[union-attr]

    promoted = twin("promote", "-p", PROFILE)  # by hand: the candidate becomes champion
    assert promoted.returncode == 0 and "version 1 → 2" in promoted.stdout, promoted.stdout
    assert store.by_alias(PROFILE, "champion").version == 2  # type: ignore[union-attr]
    rolled = twin("promote", "-p", PROFILE, "--version", "1")
    assert rolled.returncode == 0 and "version 2 → 1" in rolled.stdout
    assert store.by_alias(PROFILE, "champion").version == 1  # type: ignore[union-attr]
    assert store.version(PROFILE, 1).tags["promoted_by"] == "manual"
    missing = twin("promote", "-p", PROFILE, "--version", "7")
    assert missing.returncode == 2 and "no model version 7" in missing.stderr


@pytest.mark.parametrize(
    ("name", "training", "error"),
    [
        (PROFILE, {"base_model": "/models/does-not-exist"}, "does not exist"),
        (PROFILE, {"lora": {"rank": 0}}, "spec.training.lora.rank"),
        (PROFILE, {"lora": {"targetModules": ["no_such_proj"]}}, "no_such_proj"),
        ("nobody", {}, "no cleaned documents"),
        ("solo", {}, "no held-out documents"),
    ],
    ids=["unknown-base-model", "rank-0", "unknown-target-module", "empty-dataset", "no-held-out"],
)
def test_bad_configuration_is_a_clear_error_and_registers_nothing(
    first: dict[str, Any],
    twin: Callable[..., TwinRun],
    home: Path,
    store: MlflowStore,
    name: str,
    training: dict[str, Any],
    error: str,
) -> None:
    versions = [v.version for v in store.versions(name)]
    runs = len(store.client.search_runs([store.experiment_id(name)]))
    result = twin("train", "-p", str(_profile(home, name, **training)), "--json", timeout=300)
    assert result.returncode == 2, (result.stdout, result.stderr[-3000:])
    assert error in result.stderr
    assert [v.version for v in store.versions(name)] == versions
    assert len(store.client.search_runs([store.experiment_id(name)])) == runs


def test_mlflow_meets_the_registry_contract(tmp_path: Path) -> None:
    """The port on real MLflow (SQLite, local artifacts), call by call: the same contract the unit
    tests' fake registry meets (``support.fake_registry``)."""
    from support.fake_registry import check_registry_contract
    from twin.domain.dataset import DatasetConfig, build_dataset
    from twin.domain.instructions import OfflineInstructions

    dataset = build_dataset(
        "alice",  # the sample documents' profile; this MLflow is the test's own
        "Alice Moreau",
        [d for _, d in demo_documents()],
        generator=OfflineInstructions(),
        count_tokens=lambda t: len(t.split()),
        config=DatasetConfig(),
    )
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 4}')
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 32)
    registry = MlflowStore(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "artifacts").as_uri())
    check_registry_contract(registry, dataset, adapter, tmp_path / "scratch")


def test_fsdp_configuration_is_built_for_the_real_architecture() -> None:
    """FSDP runs only on GPUs (Ray refuses it on CPU), so here the configuration is what is checked:
    one shard unit per decoder layer of the real model, original parameters kept for LoRA."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from twin.adapters.hf_models import resolve_base_model
    from twin.domain.profile import TrainingSpec
    from twin.domain.training import Hardware, plan_training
    from twin.settings import Settings
    from twin.training.lora import fsdp_kwargs

    path = resolve_base_model("HuggingFaceTB/SmolLM2-135M-Instruct", Settings().training.model_cache_dir)
    with torch.device("meta"):  # the architecture without the weights
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
        model = get_peft_model(
            model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
        )
    plan = plan_training(TrainingSpec(gpus=4, strategy="fsdp"), Hardware(gpus=4, bf16=True))
    kwargs = fsdp_kwargs(model, plan)
    assert {c.__name__ for c in kwargs["auto_wrap_policy"].keywords["transformer_layer_cls"]} == {
        "LlamaDecoderLayer"
    }
    assert kwargs["use_orig_params"] and kwargs["mixed_precision"].param_dtype == torch.bfloat16


def test_two_workers_train_data_parallel_and_rank_0_saves_the_adapter(tmp_path: Path) -> None:
    """The multi-worker path of a GPU cluster, on two CPU workers (DDP over gloo): every worker
    takes its share of each global batch, gradients are averaged, rank 0 writes the adapter."""
    from functools import partial

    import ray

    from twin import wiring
    from twin.domain.dataset import DatasetConfig, build_dataset
    from twin.domain.instructions import OfflineInstructions
    from twin.domain.training import TrainingPlan
    from twin.settings import Settings
    from twin.training.launch import fit
    from twin.training.lora import LoopConfig

    docs = [d for _, d in demo_documents()]
    train = build_dataset(
        "alice",
        "Alice",
        docs,
        generator=OfflineInstructions(),
        count_tokens=lambda t: len(t.split()),
        config=DatasetConfig(max_response_tokens=60),
    ).train[:8]
    settings = Settings(home=tmp_path, training={"cpus_per_worker": 1})
    plan = TrainingPlan(2, False, "ddp", "float32", quantize_4bit=False, gradient_checkpointing=False)
    config = LoopConfig(
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        resolve_model=partial(wiring.base_model_path, settings),
        owner="Alice",
        samples=[s.to_json() for s in train],
        plan=plan.to_json(),
        lora_rank=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=["q_proj", "v_proj"],
        learning_rate=1e-3,
        epochs=1.0,
        max_length=96,
        batch_size=2,
        gradient_accumulation_steps=1,
        warmup_ratio=0.0,
        max_steps=2,
        extra={"run_key": "ddp-test"},
    )
    steps: list[int] = []
    wiring.ensure_ray(settings)
    try:
        result = fit(
            config,
            plan,
            cpus=1,
            results_dir=tmp_path / "ray_results",
            on_step=lambda step, total, loss: steps.append(step),
        )
    finally:
        ray.shutdown()
    assert result.metrics["steps"] == 2 and result.metrics["workers"] == 2
    assert steps == [1, 2]
    with result.checkpoint.as_directory() as adapter:
        assert (Path(adapter) / "adapter_model.safetensors").is_file()
