"""Training decisions, pure: the run plan for the hardware at hand, the run's identity, when to
retrain, and when a candidate adapter becomes the champion.

Nothing here touches a GPU or a file; the trainer asks these functions and acts on the answers, so
every rule is unit-tested on any machine, including the multi-GPU ones that only a cluster runs.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from twin.domain.errors import InvalidSpec
from twin.domain.profile import TrainingSpec

Strategy = Literal["ddp", "fsdp"]


@dataclass(frozen=True)
class Hardware:
    """What the training workers will have: GPUs per node pool and whether 4-bit kernels exist."""

    gpus: int  # GPUs the cluster can give this run (0: CPU only)
    bf16: bool = False  # the GPUs support bfloat16
    bitsandbytes: bool = False  # bitsandbytes is importable with CUDA kernels


@dataclass(frozen=True)
class TrainingPlan:
    """How one run trains: workers, device, precision, memory savers and sharding."""

    num_workers: int
    use_gpu: bool
    strategy: Strategy  # ddp: a full (adapter-wrapped) model per worker; fsdp: the base sharded
    dtype: Literal["float32", "bfloat16", "float16"]
    quantize_4bit: bool  # QLoRA: the frozen base in 4-bit NF4, adapters in the compute dtype
    gradient_checkpointing: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan_training(spec: TrainingSpec, hardware: Hardware, *, cpu_workers: int = 1) -> TrainingPlan:
    """The plan for ``spec`` on ``hardware``; raises :class:`InvalidSpec` for combinations that can
    never run (FSDP without at least two GPUs, 4-bit without a GPU and bitsandbytes, ...).

    One worker per GPU the spec asks for (``spec.gpus``), capped by what exists; on a machine
    without GPUs, ``cpu_workers`` CPU workers (one here) in float32 (CPUs without bf16 units run
    bf16 slower than fp32). ``quantization: auto`` means QLoRA exactly when a GPU and bitsandbytes
    are both present. Gradient checkpointing trades compute for memory, so it is on for GPUs (where
    memory is the limit) and off on CPU (where compute is).
    """
    use_gpu = spec.gpus > 0 and hardware.gpus > 0
    if spec.strategy == "fsdp":
        if not use_gpu:
            raise InvalidSpec(
                "training.strategy fsdp shards the model across GPUs: this run has none "
                f"(spec asks for {spec.gpus} GPU(s), the cluster offers {hardware.gpus})"
            )
        if min(spec.gpus, hardware.gpus) < 2:
            raise InvalidSpec("training.strategy fsdp needs at least 2 GPUs (training.gpus >= 2)")
    if spec.quantization == "4bit":
        if not use_gpu:
            raise InvalidSpec("training.quantization 4bit (QLoRA) needs a GPU; use none or auto on CPU")
        if not hardware.bitsandbytes:
            raise InvalidSpec("training.quantization 4bit (QLoRA) needs bitsandbytes with CUDA kernels")
    quantize = spec.quantization == "4bit" or (
        spec.quantization == "auto" and use_gpu and hardware.bitsandbytes and spec.strategy == "ddp"
    )
    if quantize and spec.strategy == "fsdp":
        raise InvalidSpec("training.quantization 4bit cannot be combined with strategy fsdp here")
    if use_gpu:
        workers = min(spec.gpus, hardware.gpus)
        dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16" if hardware.bf16 else "float16"
    else:
        workers, dtype = max(1, cpu_workers), "float32"
    return TrainingPlan(
        num_workers=workers,
        use_gpu=use_gpu,
        strategy=spec.strategy,
        dtype=dtype,
        quantize_4bit=quantize,
        gradient_checkpointing=use_gpu,
    )


def total_steps(
    samples: int, *, batch_size: int, grad_accum: int, workers: int, epochs: float, cap: int | None
) -> int:
    """Optimizer steps for a run: ``epochs`` passes over ``samples`` (sharded over workers)."""
    per_epoch = max(1, math.ceil(samples / (batch_size * workers * grad_accum)))
    steps = max(1, math.ceil(per_epoch * epochs))
    return min(steps, cap) if cap else steps


def run_key(dataset_version: str, base_model: str, spec: TrainingSpec, knobs: Mapping[str, Any]) -> str:
    """The identity of a training run: same dataset, base model, spec and knobs → same key, so a
    second ``twin train`` on unchanged data finds the first run and trains nothing."""
    payload = json.dumps(
        {
            "dataset": dataset_version,
            "base_model": base_model,
            "spec": spec.hyperparameters(),
            "knobs": dict(knobs),
        },
        sort_keys=True,
        default=str,
    )
    return "tr-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: str
    new: int = 0
    changed: int = 0
    deleted: int = 0


def retraining_decision(
    trained_on: Mapping[str, str] | None, current: Mapping[str, str], *, min_changed_documents: int
) -> RetrainDecision:
    """Whether new data warrants a new run: ``{document id: content hash}`` of the documents the
    champion's dataset was built from, against the documents stored now.

    No model yet → train. Otherwise retrain once at least ``min_changed_documents`` documents
    are new, changed or deleted; fewer is noise that would cost a GPU run for nothing.
    """
    if trained_on is None:
        return RetrainDecision(True, "no model has been trained for this profile yet", new=len(current))
    new = sum(1 for d in current if d not in trained_on)
    changed = sum(1 for d, h in current.items() if d in trained_on and trained_on[d] != h)
    deleted = sum(1 for d in trained_on if d not in current)
    moved = new + changed + deleted
    if moved >= min_changed_documents:
        return RetrainDecision(
            True,
            f"{moved} document(s) new, changed or deleted (threshold {min_changed_documents})",
            new,
            changed,
            deleted,
        )
    return RetrainDecision(
        False,
        f"only {moved} document(s) moved since the last training (threshold {min_changed_documents})",
        new,
        changed,
        deleted,
    )


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


def promotion_decision(
    candidate_ppl: float, champion_ppl: float | None, *, margin: float
) -> PromotionDecision:
    """A candidate becomes champion when there is none, or when its held-out perplexity beats the
    champion's (measured on the same held-out samples) by at least ``margin`` (relative: 0.02 =
    2 % lower). A non-finite perplexity never wins."""
    if not math.isfinite(candidate_ppl) or candidate_ppl <= 0:
        return PromotionDecision(False, f"candidate perplexity {candidate_ppl} is not a usable number")
    if champion_ppl is None or not math.isfinite(champion_ppl):
        return PromotionDecision(True, "there is no champion yet")
    needed = champion_ppl * (1.0 - margin)
    if candidate_ppl < needed or (margin == 0 and candidate_ppl < champion_ppl):
        return PromotionDecision(
            True,
            f"held-out perplexity {candidate_ppl:.3f} beats the champion's {champion_ppl:.3f}"
            f" (margin {margin:.1%})",
        )
    return PromotionDecision(
        False,
        f"held-out perplexity {candidate_ppl:.3f} does not beat the champion's {champion_ppl:.3f} "
        f"by the margin of {margin:.1%} (needs < {needed:.3f})",
    )
