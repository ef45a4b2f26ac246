"""Samples → token ids and labels, with the base model's own chat template; loss on responses only.

The same encoding serves training and held-out evaluation, so a perplexity always means "how
surprised is the model by the owner's text, given the prompt it was trained with".

Labels are -100 (ignored by the loss) on every prompt token: system prompt, instruction and the
template's markup up to the assistant turn. The response tokens and the template's end-of-turn
token carry the loss (the model must learn where the owner stops, too). A sample longer than
``max_length`` keeps its whole prompt and loses the end of its response; a prompt that leaves
fewer than 8 response tokens is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twin.domain.dataset import Sample
from twin.domain.prompts import training_messages

IGNORE_INDEX = -100
MIN_RESPONSE_TOKENS = 8


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]

    @property
    def response_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def prompt_text(tokenizer: Any, owner: str, instruction: str) -> str:
    """The chat-formatted prompt, up to and including the assistant turn's opening."""
    text: str = tokenizer.apply_chat_template(
        training_messages(owner, instruction), tokenize=False, add_generation_prompt=True
    )
    return text


def encode(tokenizer: Any, owner: str, sample: Sample, max_length: int) -> Encoded | None:
    """``sample`` as token ids and labels (see the module docstring); None when it cannot fit."""
    prompt = prompt_text(tokenizer, owner, sample.instruction)
    full: str = tokenizer.apply_chat_template(
        training_messages(owner, sample.instruction, sample.response), tokenize=False
    )
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently with and without the answer")
    # Offsets (fast tokenizers) tell which tokens belong to the response: no assumption that the
    # prompt tokenises the same on its own as inside the whole text.
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    boundary = len(prompt)
    first_response = next((i for i, (start, _) in enumerate(offsets) if start >= boundary), len(ids))
    # The template may close the turn with a newline after the end-of-turn token: keep the loss on
    # the response and its end-of-turn token, not on trailing markup.
    last = len(ids)
    eos = tokenizer.eos_token_id
    if eos is not None and eos in ids[first_response:]:
        last = first_response + ids[first_response:].index(eos) + 1
    ids = ids[:last]
    if len(ids) > max_length:
        if max_length - first_response < MIN_RESPONSE_TOKENS:
            return None
        ids = ids[:max_length]
    if len(ids) - first_response < MIN_RESPONSE_TOKENS:
        return None
    labels = [IGNORE_INDEX] * first_response + ids[first_response:]
    return Encoded(ids, labels)


def encode_all(tokenizer: Any, owner: str, samples: Sequence[Sample], max_length: int) -> list[Encoded]:
    return [e for e in (encode(tokenizer, owner, s, max_length) for s in samples) if e is not None]


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: input ids, attention mask, labels (-100 on padding)."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(e.labels)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def length_grouped_order(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Batches of similar lengths in a random order (as transformers' ``group_by_length``): shuffle,
    cut into mega-batches of 50 batches, sort each by length, cut into batches, shuffle the batches.
    Padding shrinks to almost nothing while every epoch still sees a different order."""
    import random

    rng = random.Random(seed)  # noqa: S311 -- a shuffle, not a secret
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * 50
    out: list[list[int]] = []
    for i in range(0, len(order), mega):
        group = sorted(order[i : i + mega], key=lambda j: -lengths[j])
        out.extend(group[k : k + batch_size] for k in range(0, len(group), batch_size))
    rng.shuffle(out)
    return out
