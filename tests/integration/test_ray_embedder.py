"""The Ray embedding actors against the model in-process: same vectors, in the caller's order."""

from __future__ import annotations

import math

from twin import wiring
from twin.adapters.embedders import SentenceTransformerEmbedder
from twin.settings import Settings


def test_ray_actors_embed_like_the_model_itself_in_order() -> None:
    # Lengths deliberately shuffled: the pool batches by length and must restore the order.
    texts = [
        "Idempotency is the only feature that matters at 3 a.m. " * (1 + (i * 7) % 9) + f"({i})"
        for i in range(23)
    ]
    local = SentenceTransformerEmbedder().embed(texts)
    settings = Settings(ray={"num_cpus": 2}, features={"embed_workers": 2, "embed_batch_size": 4})
    pool = wiring.ray_embedder(settings)  # starts the local Ray, as the feature workers do
    try:
        remote = pool.embed(texts)
        assert pool.dimension == 384 and pool.embed([]) == []
    finally:
        import ray

        pool.close()
        ray.shutdown()  # a local Ray holds ~1-2 GB: not for the rest of the session
    assert len(remote) == len(texts)
    for a, b in zip(local, remote, strict=True):
        cosine = sum(x * y for x, y in zip(a, b, strict=True))
        assert math.isclose(cosine, 1.0, abs_tol=1e-4)
