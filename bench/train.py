"""Training throughput: our Ray Train LoRA loop vs a plain transformers + peft loop, same run.

Both fine-tune the same base model (the bundled SmolLM2-135M-Instruct unless ``--model``) with the
same LoRA config on the same samples (the sample owner's instruction dataset, encoded the same
way), the same batch size, the same number of optimizer steps and the same threads:

- ``ours``: ``twin.training.lora.train_loop_per_worker`` under Ray Train's TorchTrainer (one CPU
  worker), exactly what ``twin train`` runs: length-grouped batches, response-only logits;
- ``plain``: the loop a user would write: ``get_peft_model``, batches in dataset order,
  ``model(**batch, labels=...)``, AdamW, in this process.

Throughput is tokens/s: non-padding tokens through the optimizer loop (model loading and Ray start
excluded for both; reported separately). The last line printed is JSON:
``{"ours_tokens_per_s": ..., "plain_tokens_per_s": ..., "ratio": ours/plain, ...}`` (goal >= 0.9).
Run: ``make bench-train`` or ``.venv/bin/python bench/train.py --steps 12``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def samples(model_path: str, max_length: int) -> list[Any]:
    from transformers import AutoTokenizer

    from twin.demo.corpus import demo_documents
    from twin.domain.dataset import DatasetConfig, build_dataset
    from twin.domain.instructions import OfflineInstructions

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    dataset = build_dataset(
        "alice",
        "Alice Moreau",
        [d for _, d in demo_documents()],
        generator=OfflineInstructions(),
        count_tokens=lambda t: len(tokenizer(t, add_special_tokens=False)["input_ids"]),
        config=DatasetConfig(max_response_tokens=max_length),
    )
    return dataset.train


def plain_loop(model_path: str, train: list[Any], args: argparse.Namespace) -> dict[str, float]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from twin.training.formatting import collate, encode_all

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model: Any = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model.config.use_cache = False
    model = get_peft_model(
        model,
        LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.05,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            task_type="CAUSAL_LM",
        ),
    )
    encoded = encode_all(tokenizer, "Alice Moreau", train, args.max_length)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    load = time.perf_counter() - started
    model.train()
    tokens, step, began = 0, 0, time.perf_counter()
    while step < args.steps:
        for i in range(0, len(encoded), args.batch_size):
            batch = collate(encoded[i : i + args.batch_size], tokenizer.pad_token_id)
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            tokens += int(batch["attention_mask"].sum())
            step += 1
            if step >= args.steps:
                break
    seconds = time.perf_counter() - began
    return {"tokens": tokens, "seconds": seconds, "load_seconds": load}


def ours(model_name: str, cache_dir: str, train: list[Any], args: argparse.Namespace) -> dict[str, float]:
    from functools import partial

    from twin import wiring
    from twin.adapters.hf_models import resolve_base_model
    from twin.domain.training import TrainingPlan
    from twin.settings import Settings
    from twin.training.hardware import worker_cpus
    from twin.training.launch import fit
    from twin.training.lora import LoopConfig

    plan = TrainingPlan(
        num_workers=1,
        use_gpu=False,
        strategy="ddp",
        dtype="float32",
        quantize_4bit=False,
        gradient_checkpointing=False,
    )
    with tempfile.TemporaryDirectory() as home:
        config = LoopConfig(
            base_model=model_name,
            resolve_model=partial(resolve_base_model, cache_dir=Path(cache_dir)),
            owner="Alice Moreau",
            samples=[s.to_json() for s in train],
            plan=plan.to_json(),
            lora_rank=16,
            lora_alpha=32,
            lora_dropout=0.05,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            learning_rate=2e-4,
            epochs=100.0,
            max_length=args.max_length,
            batch_size=args.batch_size,
            gradient_accumulation_steps=1,
            warmup_ratio=0.0,
            max_steps=args.steps,
            threads=args.threads,
            extra={"run_key": "bench"},
        )
        started = time.perf_counter()
        wiring.ensure_ray(Settings(home=Path(home)))  # counted: the wall time includes Ray's start
        cpus = worker_cpus(args.threads, ray_local=True)
        result = fit(config, plan, cpus=cpus, results_dir=Path(home) / "ray_results")
        wall = time.perf_counter() - started
    m = result.metrics
    return {
        "tokens": m["train_tokens"],
        "seconds": m["train_seconds"],
        "load_seconds": m["load_seconds"],
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=48)
    args = parser.parse_args()

    from twin.adapters.hf_models import resolve_base_model
    from twin.settings import Settings

    cache = Settings().training.model_cache_dir
    model_path = resolve_base_model(args.model, cache)
    train = samples(model_path, args.max_length)[: args.samples]
    plain = plain_loop(model_path, train, args)
    mine = ours(args.model, str(cache), train, args)
    plain_rate = plain["tokens"] / plain["seconds"]
    ours_rate = mine["tokens"] / mine["seconds"]
    print(
        json.dumps(
            {
                "model": args.model,
                "steps": args.steps,
                "batch_size": args.batch_size,
                "threads": args.threads,
                "ours_tokens": int(mine["tokens"]),
                "plain_tokens": int(plain["tokens"]),
                "ours_seconds": round(mine["seconds"], 2),
                "plain_seconds": round(plain["seconds"], 2),
                "ours_wall_seconds_incl_ray_start": round(mine["wall"], 2),
                "ours_load_seconds": round(mine["load_seconds"], 2),
                "plain_load_seconds": round(plain["load_seconds"], 2),
                "ours_tokens_per_s": round(ours_rate, 1),
                "plain_tokens_per_s": round(plain_rate, 1),
                "ratio": round(ours_rate / plain_rate, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
