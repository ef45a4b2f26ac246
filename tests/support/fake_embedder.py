"""A fake :class:`twin.ports.Embedder` for fast tests: deterministic feature hashing of word
unigrams and bigrams. Similar texts get similar vectors, so retrieval logic stays meaningful, but
it is never the only test of a feature: the real model (all-MiniLM-L6-v2) runs in the integration
tests of the same behaviour.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Sequence

_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """Deterministic bag-of-words feature hashing (see the module docstring)."""

    def __init__(self, dimension: int = 384, max_tokens: int = 256) -> None:
        self.model_name = f"hashing-{dimension}"
        self.dimension = dimension
        self.max_tokens = max_tokens

    def _vector(self, text: str) -> list[float]:
        words = [w.lower() for w in _WORD.findall(text)]
        features = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        vec = [0.0] * self.dimension
        for feature in features:
            digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self.dimension
            vec[index] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def count_tokens(self, text: str) -> int:
        return len(_WORD.findall(text))
