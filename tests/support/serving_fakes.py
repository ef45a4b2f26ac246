"""Fakes of serving's expensive ports, for fast unit tests of the Serve pipeline's logic (the
ingress service and the engine deployment, in-process, no Ray, no model, no database).

They sit beside, never instead of, the real-service tests: ``tests/integration/test_serve_api.py``
runs the same behaviour on vLLM and transformers with real Postgres, MLflow and the openai client.

- :class:`FakeChatEngine`: a :class:`twin.ports.ChatEngine` whose "model" always writes the same
  reply, one word per token; a word is a token everywhere here (prompts, the footer), so token
  budgets are easy to reason about in a test.
- :func:`fake_retriever`: a :class:`twin.ports.Retriever` factory over fixed chunks of one profile.
- :class:`NoLinks`, :class:`MemoryRequestLog`: the link reader and the request log, in memory.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

from twin.domain.documents import Category, Platform
from twin.domain.features import RetrievalHit, RetrievalQuery
from twin.domain.generation import (
    AdapterRef,
    ChatTurn,
    EngineDelta,
    GenerationParams,
    RequestRecord,
    StopTrimmer,
)
from twin.domain.links import LinkResult

REPLY = "Keyed writes make a pipeline safe to run twice. Replays change nothing."


@dataclass
class FakeChatEngine:
    reply: str = REPLY
    name: str = "fake"
    quantization: str | None = None
    loaded: list[str] = field(default_factory=list)  # adapter names currently loaded
    unloaded: list[str] = field(default_factory=list)
    requests: list[tuple[list[int], GenerationParams, AdapterRef | None]] = field(default_factory=list)

    def chat_prompt(self, messages: Sequence[ChatTurn]) -> list[int]:
        return list(range(sum(len(m.content.split()) + 1 for m in messages)))

    def text_prompt(self, text: str) -> list[int]:
        return list(range(len(text.split()))) or [0]

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def load_adapter(self, adapter: AdapterRef) -> None:
        if adapter.name not in self.loaded:
            self.loaded.append(adapter.name)

    async def unload_adapter(self, adapter: AdapterRef) -> None:
        self.loaded.remove(adapter.name)
        self.unloaded.append(adapter.name)

    async def generate(
        self, prompt_ids: list[int], params: GenerationParams, adapter: AdapterRef | None, request_id: str
    ) -> AsyncIterator[EngineDelta]:
        self.requests.append((prompt_ids, params, adapter))
        words = self.reply.split()
        trimmer = StopTrimmer(params.stop)
        for n, word in enumerate(words[: params.max_tokens], 1):
            text = trimmer.feed(word if n == 1 else f" {word}")
            if trimmer.stopped:
                yield EngineDelta(text, 1, "stop")
                return
            if n == params.max_tokens and n < len(words):
                yield EngineDelta(text + trimmer.flush(), 1, "length")
                return
            yield EngineDelta(text, 1)
        yield EngineDelta(trimmer.flush(), 0, "stop")

    async def shutdown(self) -> None:
        self.close()

    def close(self) -> None:
        self.loaded.clear()


CHUNKS = [
    ("Idempotency at 3 a.m.", "https://alice.example/idempotency", "Keyed upserts make replays harmless."),
    ("Dead letters", "https://alice.example/dead-letters", "Park what can never succeed, with why."),
]


class FixedRetriever:
    """Returns every chunk of ``alice`` with decreasing scores, and nothing for anyone else."""

    def __init__(self) -> None:
        self.queries: list[RetrievalQuery] = []

    def search(self, query: RetrievalQuery) -> list[RetrievalHit]:
        self.queries.append(query)
        if query.profile != "alice":
            return []
        return [
            RetrievalHit(
                uuid.uuid5(uuid.NAMESPACE_URL, url),
                0,
                "alice",
                Category.ARTICLE,
                Platform.MEDIUM,
                url,
                title,
                text,
                0.9 - n / 10,
            )
            for n, (title, url, text) in enumerate(CHUNKS[: query.k])
        ]


def fake_retriever(retriever: FixedRetriever) -> Callable[[int], AbstractContextManager[FixedRetriever]]:
    """A :class:`twin.ports.ServingDeps` ``retriever`` factory handing out ``retriever``."""

    @contextmanager
    def open_retriever(dimension: int) -> Iterator[FixedRetriever]:
        yield retriever

    return open_retriever


class NoLinks:
    def read(self, urls: Sequence[str]) -> list[LinkResult]:
        return [LinkResult(url, None, "FetchError: links are not read in unit tests") for url in urls]


@dataclass
class MemoryRequestLog:
    records: list[RequestRecord] = field(default_factory=list)

    def record(self, record: RequestRecord) -> None:
        self.records.append(record)

    def close(self) -> None:
        pass
