"""Embedding on Ray actors that hold the model and embed in batches, locally or on a cluster.

Ray itself is started (or joined) by :mod:`twin.wiring` before this adapter is built.

:class:`RayEmbedder` implements the :class:`twin.ports.Embedder` seam, so the pipeline does
not know whether vectors come from this process or from a pool of actors. Each actor loads the
model once; a call splits its texts into ``batch_size`` batches spread over the actors with an
``ActorPool`` (order preserved). Token counting stays local: it needs only the tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twin.adapters.embedders import SentenceTransformerEmbedder


class _EmbedActor:
    """The actor body: one model per actor, one thread (more threads lose on small models)."""

    def __init__(self, model: str, batch_size: int) -> None:
        import torch

        torch.set_num_threads(1)
        self._embedder = SentenceTransformerEmbedder(model, batch_size=batch_size)
        self._embedder.embed(["warm up"])  # load weights now, not inside the first timed batch

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed(texts)


class RayEmbedder:
    def __init__(
        self,
        model: str,
        *,
        workers: int = 1,
        batch_size: int = 32,
    ) -> None:
        import ray
        from ray.util import ActorPool

        self._local = SentenceTransformerEmbedder(model, batch_size=batch_size)  # tokenizer, dims only
        self.model_name = model
        self.dimension = self._local.dimension
        self.max_tokens = self._local.max_tokens
        self._batch_size = batch_size
        actor = ray.remote(num_cpus=1)(_EmbedActor)
        self._actors: list[Any] = [actor.remote(model, batch_size) for _ in range(workers)]
        ray.get([a.__ray_ready__.remote() for a in self._actors])  # model loaded before we report ready
        self._pool = ActorPool(self._actors)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        # Batch texts of similar length together (as sentence-transformers does within one call):
        # a batch is padded to its longest text, so mixing a 60-word post with a 250-word chunk
        # wastes most of the compute. Results go back in the caller's order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        ranked = [texts[i] for i in order]
        batches = [ranked[i : i + self._batch_size] for i in range(0, len(ranked), self._batch_size)]
        vectors: list[list[float]] = [[] for _ in texts]
        position = 0
        for batch in self._pool.map(lambda a, b: a.embed.remote(b), batches):
            for vector in batch:
                vectors[order[position]] = vector
                position += 1
        return vectors

    def count_tokens(self, text: str) -> int:
        return self._local.count_tokens(text)

    def close(self) -> None:
        import ray

        for actor in self._actors:
            ray.kill(actor)
        self._actors = []
