"""The pure training rules: the run plan per hardware, run identity, the retraining policy, the
promotion gate, and the style-fidelity score."""

from __future__ import annotations

import math

import pytest

from twin.demo.corpus import demo_documents
from twin.domain.errors import InvalidSpec
from twin.domain.profile import TrainingSpec, parse_profile
from twin.domain.style import style_fidelity, style_profile
from twin.domain.training import (
    Hardware,
    plan_training,
    promotion_decision,
    retraining_decision,
    run_key,
    total_steps,
)

CPU = Hardware(gpus=0)
GPUS = Hardware(gpus=8, bf16=True, bitsandbytes=True)


def spec(**fields: object) -> TrainingSpec:
    return TrainingSpec.model_validate(fields)


def test_cpu_plan_is_one_float32_worker_without_memory_savers() -> None:
    plan = plan_training(spec(), CPU)
    assert (plan.num_workers, plan.use_gpu, plan.dtype) == (1, False, "float32")
    assert not plan.quantize_4bit and not plan.gradient_checkpointing
    assert plan_training(spec(gpus=0), GPUS).use_gpu is False  # the spec can ask for CPU


def test_gpu_plan_one_worker_per_gpu_with_qlora_when_bitsandbytes() -> None:
    plan = plan_training(spec(gpus=4), GPUS)
    assert (plan.num_workers, plan.use_gpu, plan.dtype, plan.strategy) == (4, True, "bfloat16", "ddp")
    assert plan.quantize_4bit and plan.gradient_checkpointing
    assert plan_training(spec(gpus=16), GPUS).num_workers == 8  # capped by what the cluster has
    assert not plan_training(spec(gpus=1), Hardware(gpus=1, bf16=False)).quantize_4bit
    assert plan_training(spec(gpus=1), Hardware(gpus=1, bf16=False)).dtype == "float16"
    assert not plan_training(spec(gpus=1, quantization="none"), GPUS).quantize_4bit


def test_fsdp_shards_across_gpus_and_refuses_what_cannot_run() -> None:
    plan = plan_training(spec(gpus=4, strategy="fsdp"), GPUS)
    assert (plan.strategy, plan.num_workers, plan.quantize_4bit) == ("fsdp", 4, False)
    with pytest.raises(InvalidSpec, match=r"fsdp .* has none"):
        plan_training(spec(gpus=4, strategy="fsdp"), CPU)
    with pytest.raises(InvalidSpec, match="at least 2 GPUs"):
        plan_training(spec(gpus=1, strategy="fsdp"), GPUS)
    with pytest.raises(InvalidSpec, match="cannot be combined"):
        plan_training(spec(gpus=2, strategy="fsdp", quantization="4bit"), GPUS)
    with pytest.raises(InvalidSpec, match=r"QLoRA.* needs a GPU"):
        plan_training(spec(quantization="4bit"), CPU)
    with pytest.raises(InvalidSpec, match="bitsandbytes"):
        plan_training(spec(gpus=1, quantization="4bit"), Hardware(gpus=1, bf16=True))


def test_bad_training_specs_are_invalid_profiles() -> None:
    base = {
        "apiVersion": "llmtwin.dev/v1alpha1",
        "kind": "TwinProfile",
        "metadata": {"name": "alice"},
        "spec": {"owner": {"displayName": "A"}, "sources": [{"url": "https://a.dev"}]},
    }
    for training, field in (
        ({"lora": {"rank": 0}}, "rank"),
        ({"learningRate": 0}, "learningRate"),
        ({"strategy": "zero3"}, "strategy"),
        ({"batchSize": 0}, "batchSize"),
    ):
        data = {**base, "spec": {**base["spec"], "training": training}}  # type: ignore[dict-item]
        with pytest.raises(InvalidSpec, match=field):
            parse_profile(data)


def test_total_steps() -> None:
    assert total_steps(100, batch_size=8, grad_accum=1, workers=1, epochs=1, cap=None) == 13
    assert total_steps(100, batch_size=8, grad_accum=2, workers=2, epochs=3, cap=None) == 12
    assert total_steps(100, batch_size=8, grad_accum=1, workers=1, epochs=0.5, cap=None) == 7
    assert total_steps(100, batch_size=8, grad_accum=1, workers=1, epochs=3, cap=5) == 5
    assert total_steps(1, batch_size=8, grad_accum=1, workers=4, epochs=1, cap=None) == 1


def test_run_key_changes_with_anything_that_changes_the_result() -> None:
    key = run_key("ds-1", "m", spec(), {"max_steps": None})
    assert key == run_key("ds-1", "m", spec(), {"max_steps": None})
    assert key != run_key("ds-2", "m", spec(), {"max_steps": None})
    assert key != run_key("ds-1", "other", spec(), {"max_steps": None})
    assert key != run_key("ds-1", "m", spec(learningRate=1e-3), {"max_steps": None})
    assert key != run_key("ds-1", "m", spec(), {"max_steps": 10})


def test_retraining_policy() -> None:
    trained = {f"d{i}": "h" for i in range(10)}
    assert retraining_decision(None, trained, min_changed_documents=5).retrain
    same = retraining_decision(trained, dict(trained), min_changed_documents=5)
    assert not same.retrain and "only 0" in same.reason
    moved = {**{f"d{i}": "h" for i in range(2, 10)}, "d3": "changed", "new1": "h", "new2": "h"}
    decision = retraining_decision(trained, moved, min_changed_documents=5)
    assert (decision.new, decision.changed, decision.deleted, decision.retrain) == (2, 1, 2, True)
    assert not retraining_decision(trained, moved, min_changed_documents=6).retrain


def test_promotion_gate() -> None:
    assert promotion_decision(10.0, None, margin=0.01).promote  # no champion yet
    assert promotion_decision(9.0, 10.0, margin=0.05).promote
    refused = promotion_decision(9.9, 10.0, margin=0.05)
    assert not refused.promote and "needs < 9.500" in refused.reason
    assert not promotion_decision(11.0, 10.0, margin=0.0).promote  # worse never wins
    assert not promotion_decision(10.0, 10.0, margin=0.0).promote  # nor does a tie
    assert not promotion_decision(math.nan, 10.0, margin=0.0).promote
    assert not promotion_decision(math.inf, None, margin=0.0).promote


def test_style_fidelity_prefers_the_owners_own_voice() -> None:
    docs = [d for _, d in demo_documents() if d.category.value != "code"]
    own = [d.content for d in docs[::2]]
    other_own = [d.content for d in docs[1::2]]
    shouty = ["BUY NOW!!! Best deal ever!!! Click here!!! Amazing!!! Wow!!!" for _ in range(5)]
    legalese = [
        "Notwithstanding the aforementioned provisions, the licensee shall indemnify the licensor "
        "hereunder, pursuant to the terms and conditions hereinafter set forth in perpetuity."
    ] * 5
    same_author = style_fidelity(other_own, own)
    assert 0.0 <= same_author <= 1.0
    assert same_author > style_fidelity(shouty, own) + 0.15
    assert same_author > style_fidelity(legalese, own) + 0.15
    assert style_fidelity(own, own) == pytest.approx(1.0)
    assert style_fidelity([], own) == 0.0
    profile = style_profile(own)
    assert 8 < profile.sentence_length < 30 and 0.3 < profile.richness < 1.0
