"""Evaluation on the owner's held-out writing: perplexity, style fidelity, and an optional LLM judge.

:func:`evaluate` loads the base model once and attaches every adapter to compare (the candidate,
and the champion when there is one) under its own name, so all of them, and the base model with
adapters disabled, are measured on exactly the same held-out samples with the same encoding as
training (:mod:`twin.training.formatting`):

- **perplexity**: ``exp`` of the mean negative log-likelihood per response token (prompt tokens
  excluded), over every held-out sample (up to ``max_samples``);
- **style fidelity** (:mod:`twin.domain.style`): greedy generations for the first held-out
  instructions, compared with the owner's texts for them;
- **judge** (optional): an LLM on an OpenAI-compatible endpoint rates, 1-10, how likely each
  generation is to be by the author of the reference text (port :class:`twin.ports.Judge`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twin.domain.dataset import Sample
from twin.domain.style import style_fidelity
from twin.training.formatting import collate, encode_all, prompt_text

BASE = "base"


@dataclass(frozen=True)
class EvalConfig:
    owner: str
    max_length: int
    batch_size: int = 8
    max_samples: int = 64
    style_samples: int = 4
    max_new_tokens: int = 96
    threads: int = 1


@dataclass
class ModelScores:
    perplexity: float
    nll: float
    tokens: int
    style_fidelity: float | None = None
    generations: list[str] = field(default_factory=list)


@dataclass
class EvalReport:
    samples: int  # held-out samples scored
    scores: dict[str, ModelScores]  # "base" and each adapter name
    references: list[str]  # the owner's texts the generations are compared with
    instructions: list[str]
    seconds: float

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {"heldout_samples": float(self.samples), "eval_seconds": self.seconds}
        for name, s in self.scores.items():
            out[f"heldout_ppl_{name}"] = s.perplexity
            out[f"heldout_nll_{name}"] = s.nll
            if s.style_fidelity is not None:
                out[f"style_fidelity_{name}"] = s.style_fidelity
        return out


def _perplexity(
    model: Any, encoded: Sequence[Any], pad_id: int, batch_size: int, device: Any
) -> tuple[float, int]:
    """Summed NLL over response tokens, and how many tokens that was."""
    import torch

    from twin.training.loss import response_nll

    total_nll, total_tokens = 0.0, 0
    ordered = sorted(encoded, key=lambda e: len(e.input_ids))  # similar lengths: little padding
    with torch.no_grad():
        for i in range(0, len(ordered), batch_size):
            t = {k: v.to(device) for k, v in collate(ordered[i : i + batch_size], pad_id).items()}
            nll, tokens = response_nll(model, t)
            total_nll += float(nll)
            total_tokens += tokens
    return total_nll, total_tokens


def _generate(
    model: Any, tokenizer: Any, *, owner: str, instructions: Sequence[str], max_new_tokens: int, device: Any
) -> list[str]:
    import torch

    out = []
    for instruction in instructions:
        prompt = prompt_text(tokenizer, owner, instruction)
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
        with torch.no_grad():
            generated = model.generate(
                **ids,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                repetition_penalty=1.1,
                pad_token_id=tokenizer.pad_token_id,
            )
        out.append(
            tokenizer.decode(generated[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        )
    return out


def evaluate(
    base_path: str,
    adapters: Mapping[str, str],
    heldout: Sequence[Sample],
    config: EvalConfig,
    *,
    dtype: str = "float32",
    style_for: Sequence[str] | None = None,
) -> EvalReport:
    """Scores of the base model and of each adapter (name → directory) on ``heldout``; style
    generations only for the models in ``style_for`` (all when None): they cost far more than
    perplexity, and the gate needs only the champion's perplexity."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    torch.set_num_threads(config.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    loaded: Any = AutoModelForCausalLM.from_pretrained(base_path, dtype=getattr(torch, dtype))
    model: Any = loaded.to(device)
    model.eval()
    samples = list(heldout)[: config.max_samples]
    encoded = encode_all(tokenizer, config.owner, samples, config.max_length)
    if not encoded:
        raise ValueError("no held-out sample fits max_length: nothing to evaluate")
    style_set = samples[: config.style_samples]
    instructions = [s.instruction for s in style_set]
    references = [s.response for s in style_set]

    def score(m: Any, name: str) -> ModelScores:
        nll, tokens = _perplexity(m, encoded, tokenizer.pad_token_id, config.batch_size, device)
        scores = ModelScores(perplexity=math.exp(nll / tokens), nll=nll / tokens, tokens=tokens)
        if style_set and (style_for is None or name in style_for):
            scores.generations = _generate(
                m,
                tokenizer,
                owner=config.owner,
                instructions=instructions,
                max_new_tokens=config.max_new_tokens,
                device=device,
            )
            scores.style_fidelity = style_fidelity(scores.generations, references)
        return scores

    results: dict[str, ModelScores] = {BASE: score(model, BASE)}
    if adapters:
        from peft import PeftModel

        names = list(adapters)
        peft: Any = PeftModel.from_pretrained(model, adapters[names[0]], adapter_name=names[0])
        for name in names[1:]:
            peft.load_adapter(adapters[name], adapter_name=name)
        peft.eval()
        for name in names:
            peft.set_adapter(name)
            results[name] = score(peft, name)
    return EvalReport(
        samples=len(encoded),
        scores=results,
        references=references,
        instructions=instructions,
        seconds=time.perf_counter() - started,
    )
