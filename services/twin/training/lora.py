"""LoRA fine-tuning with transformers + peft, run by Ray Train's TorchTrainer (one worker per GPU,
or one CPU worker here).

:func:`train_loop_per_worker` is the body every Ray Train worker runs; its config is plain data
(:class:`LoopConfig`), so the same loop runs on a laptop and on a GPU node pool. Per the plan
(:func:`twin.domain.training.plan_training`): float32 on CPU, bf16/fp16 with gradient checkpointing
on GPU, the frozen base in 4-bit NF4 (QLoRA) when bitsandbytes is present, DDP for models that fit
one GPU and FSDP (through ``ray.train.torch.prepare_model``) for those that do not.

Rank 0 logs metrics straight into the registry's run every ``log_every`` optimizer steps, through
the picklable writer the run handed out (:meth:`twin.ports.TrainingRun.metric_writer`); a
``ray.train.report`` costs ~2 s, so the loop reports once, at the end, with the adapter as its
checkpoint. It pushes progress onto a Ray queue for the driver's progress bar.
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from twin.domain.dataset import Sample
from twin.domain.training import TrainingPlan
from twin.ports import MetricWriter
from twin.training.formatting import Encoded, collate, encode_all, length_grouped_order

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


@dataclass
class LoopConfig:
    """Everything a worker needs: plain data, plus two picklable callables from the composition
    root (the base model resolver and the run's metric writer); it crosses process boundaries."""

    base_model: str  # a name or path; each worker resolves it (nodes have their own model cache)
    resolve_model: Callable[[str], str]  # base model name -> loadable path (picklable)
    owner: str
    samples: list[dict[str, Any]]  # Sample.to_json() of the training split
    plan: dict[str, Any]  # TrainingPlan.to_json()
    lora_rank: int
    lora_alpha: int
    lora_dropout: float
    target_modules: list[str]
    learning_rate: float
    epochs: float
    max_length: int
    batch_size: int
    gradient_accumulation_steps: int
    warmup_ratio: float
    max_steps: int | None = None
    seed: int = 42
    log_every: int = 5
    threads: int = 1
    metrics: MetricWriter | None = None  # the run's step metrics; None logs nothing
    progress: Any = None  # a ray.util.queue.Queue, or None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_base(path: str, plan: TrainingPlan, *, device: Any = None) -> tuple[Any, Any]:
    """Tokenizer and base model as the plan says (dtype, 4-bit, gradient checkpointing)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs: dict[str, Any] = {"dtype": getattr(torch, _DTYPES[plan.dtype])}
    if plan.quantize_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=kwargs["dtype"],
        )
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.config.use_cache = False  # caches are for generation; training only wastes memory on them
    return tokenizer, model


def check_target_modules(model: Any, targets: list[str]) -> None:
    """Raise InvalidSpec when a LoRA target module does not exist in ``model``."""
    from twin.domain.errors import InvalidSpec

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in targets if m not in present]
    if missing:
        linear = sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"}
        )
        raise InvalidSpec(
            f"training.lora.targetModules {missing} are not in this model; its linear layers: {linear}"
        )


def check_model(path: str, targets: list[str]) -> None:
    """Validate the LoRA targets against the model's architecture without loading its weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    check_target_modules(model, targets)


def add_lora(model: Any, config: LoopConfig, plan: TrainingPlan) -> Any:
    """The base frozen, LoRA adapters on ``target_modules``."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    check_target_modules(model, config.target_modules)
    if plan.quantize_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=plan.gradient_checkpointing)
    elif plan.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def fsdp_kwargs(model: Any, plan: TrainingPlan) -> dict[str, Any]:
    """FullyShardedDataParallel arguments for a LoRA model: one unit per decoder layer (the model's
    ``_no_split_modules``), original parameters kept (frozen base and trainable adapters share
    units), mixed precision in the plan's dtype. Built and checked on any machine; wrapping needs GPUs."""
    import torch
    from torch.distributed.fsdp import MixedPrecision, ShardingStrategy
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or [])
    layer_classes = {type(m) for m in base.modules() if type(m).__name__ in names}
    if not layer_classes:
        raise ValueError(
            f"{type(base).__name__} names no decoder layer class (_no_split_modules): cannot shard it"
        )
    dtype = getattr(torch, _DTYPES[plan.dtype])
    return {
        "auto_wrap_policy": functools.partial(
            transformer_auto_wrap_policy, transformer_layer_cls=layer_classes
        ),
        "use_orig_params": True,
        "sharding_strategy": ShardingStrategy.FULL_SHARD,
        "mixed_precision": MixedPrecision(param_dtype=dtype, reduce_dtype=dtype, buffer_dtype=dtype),
        "limit_all_gathers": True,
    }


def batches(encoded: list[Encoded], batch_size: int, seed: int, epoch: int) -> Iterator[list[Encoded]]:
    """One epoch of length-grouped batches in random order (the same for the same seed and epoch)."""
    lengths = [len(e.input_ids) for e in encoded]
    for group in length_grouped_order(lengths, batch_size, seed * 1000 + epoch):
        yield [encoded[j] for j in group]


@dataclass
class StepStats:
    step: int
    loss: float
    learning_rate: float
    tokens: int  # non-padding tokens processed in this optimizer step
    seconds: float


def optimise(
    model: Any,
    encoded: list[Encoded],
    config: LoopConfig,
    *,
    pad_id: int,
    device: Any,
    steps: int,
    rank: int = 0,
    world: int = 1,
    on_step: Callable[[StepStats], None] = lambda s: None,
) -> list[StepStats]:
    """The optimisation loop: AdamW on the trainable (adapter) parameters, linear warm-up and decay,
    gradient accumulation, gradient clipping at 1.0; loss on response tokens only.

    With several workers every one walks the same shuffled order of global batches
    (``batch_size * world`` samples) and takes its ``rank::world`` share; a global batch too small
    to give every worker a sample is skipped by all of them alike (no collective can hang).
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(steps * config.warmup_ratio), steps)
    model.train()
    history: list[StepStats] = []
    accum = config.gradient_accumulation_steps
    step, micro, epoch = 0, 0, 0
    tokens, loss_sum, started = 0, 0.0, time.perf_counter()
    while step < steps:
        for batch in batches(encoded, config.batch_size * world, config.seed, epoch):
            if len(batch) < world:
                continue
            part = batch[rank::world]
            tensors = {k: v.to(device) for k, v in collate(part, pad_id).items()}
            loss = model(**tensors)  # a ResponseLoss: the mean loss over response tokens
            (loss / accum).backward()
            loss_sum += float(loss.detach())
            tokens += int(tensors["attention_mask"].sum())
            micro += 1
            if micro % accum:
                continue
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            now = time.perf_counter()
            stats = StepStats(step, loss_sum / accum, scheduler.get_last_lr()[0], tokens, now - started)
            history.append(stats)
            on_step(stats)
            tokens, loss_sum, started = 0, 0.0, time.perf_counter()
            if step >= steps:
                break
        epoch += 1
    return history


def save_adapter(model: Any, peft_model: Any, plan: TrainingPlan, out: Path, *, rank: int) -> None:
    """The adapter weights and config (not the base model) into ``out``, from rank 0. ``model`` is
    what the loop trained (possibly DDP/FSDP-wrapped), ``peft_model`` the adapter-carrying model."""
    if plan.strategy == "fsdp":
        from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel, StateDictType

        with FullyShardedDataParallel.state_dict_type(
            model, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
        ):
            state = model.state_dict()
        if rank == 0:
            # Keys of the loss wrapper's state are "model.<peft key>": strip the wrapper's prefix.
            inner = {k.removeprefix("model."): v for k, v in state.items()}
            peft_model.save_pretrained(str(out), state_dict=inner)
        return
    if rank == 0:
        peft_model.save_pretrained(str(out))


def train_loop_per_worker(raw: dict[str, Any]) -> None:
    """The Ray Train worker: load, wrap, optimise, report the adapter as the run's checkpoint."""
    import ray.train
    import ray.train.torch as ray_torch
    import torch

    config = LoopConfig(**raw)
    plan = TrainingPlan(**config.plan)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = ray_torch.get_device()
    loaded = time.perf_counter()
    path = config.resolve_model(config.base_model)
    tokenizer, model = load_base(path, plan, device=device)
    model = add_lora(model, config, plan)
    samples = [Sample.from_json(s) for s in config.samples]
    encoded = encode_all(tokenizer, config.owner, samples, config.max_length)
    if not encoded:
        raise ValueError("no training sample fits max_length: raise spec.training.maxLength")
    from twin.training.loss import ResponseLoss

    loss_module: Any = ResponseLoss(model)
    if plan.strategy == "fsdp":
        kwargs = fsdp_kwargs(model, plan)
        loss_module = ray_torch.prepare_model(
            loss_module, parallel_strategy="fsdp", parallel_strategy_kwargs=kwargs
        )
    else:
        # 4-bit weights are placed at load time and cannot be moved; DDP wraps only when world > 1.
        loss_module = ray_torch.prepare_model(
            loss_module, move_to_device=not plan.quantize_4bit, parallel_strategy="ddp"
        )
    load_s = time.perf_counter() - loaded

    from twin.domain.training import total_steps

    steps = total_steps(
        len(encoded),
        batch_size=config.batch_size,
        grad_accum=config.gradient_accumulation_steps,
        workers=world,
        epochs=config.epochs,
        cap=config.max_steps,
    )
    logger = _StepLogger(config.metrics, config.log_every) if rank == 0 and config.metrics else None

    def on_step(stats: StepStats) -> None:
        if rank != 0:
            return
        if config.progress is not None:
            config.progress.put_nowait(("step", stats.step, steps, stats.loss))
        if logger is not None:
            logger.step(stats, steps)

    begun = time.perf_counter()
    history = optimise(
        loss_module,
        encoded,
        config,
        pad_id=tokenizer.pad_token_id,
        device=device,
        steps=steps,
        rank=rank,
        world=world,
        on_step=on_step,
    )
    train_s = time.perf_counter() - begun
    tokens = sum(h.tokens for h in history)
    metrics = {
        "steps": len(history),
        "final_loss": history[-1].loss,
        "first_loss": history[0].loss,
        "train_seconds": train_s,
        "load_seconds": load_s,
        "train_tokens": tokens * world,
        "tokens_per_s": tokens * world / train_s if train_s else 0.0,
        "samples": len(encoded),
        "workers": world,
    }
    if logger is not None:
        logger.finish(metrics)
    with tempfile.TemporaryDirectory() as tmp:
        save_adapter(loss_module, model, plan, Path(tmp), rank=rank)
        checkpoint = ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None
        ray.train.report(metrics, checkpoint=checkpoint)


class _StepLogger:
    """Rank 0's metrics to the run, batched every ``log_every`` steps (and the last one)."""

    def __init__(self, write: MetricWriter, log_every: int) -> None:
        self.write = write
        self.log_every = log_every
        self.pending: list[tuple[str, float, int]] = []

    def step(self, stats: StepStats, steps: int) -> None:
        self.pending += [
            ("train_loss", stats.loss, stats.step),
            ("learning_rate", stats.learning_rate, stats.step),
            ("tokens_per_s", stats.tokens / stats.seconds if stats.seconds else 0.0, stats.step),
        ]
        if stats.step % self.log_every == 0 or stats.step == steps:
            self.write(self.pending)
            self.pending = []

    def finish(self, metrics: dict[str, float]) -> None:
        if self.pending:
            self.write(self.pending)
        self.write([(f"run_{k}", float(v), 0) for k, v in metrics.items()])
