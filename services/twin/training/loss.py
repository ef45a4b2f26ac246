"""The training loss: mean negative log-likelihood of the response tokens only.

The output head runs only where a label counts. A causal LM's ``forward(labels=...)`` computes
vocabulary logits for every position (prompt and padding too), which on SmolLM2's 49k vocabulary is
a fifth of the compute and most of the activation memory of a small model.
"""

from __future__ import annotations

from typing import Any

import torch

from twin.training.formatting import IGNORE_INDEX


def _causal_lm_parts(model: Any) -> tuple[Any, Any]:
    """The decoder stack and the output head of a (possibly peft-wrapped) causal LM."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def response_nll(model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of the response tokens of ``batch``, and their count."""
    decoder, head = _causal_lm_parts(model)
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    logits = head(hidden[:, :-1, :][keep]).float()
    nll = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
    return nll, int(keep.sum())


class ResponseLoss(torch.nn.Module):
    """A module whose forward is the mean response-token loss, so DDP/FSDP wrap the whole
    computation (calling a wrapped model's submodules directly would bypass their hooks)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        nll, tokens = response_nll(
            self.model, {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        )
        return nll / max(tokens, 1)
