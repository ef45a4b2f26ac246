"""Grounding: the context an answer is built on, always from the requesting profile's own writing,
and the messages the engine is given.

The question (the last user message) is embedded with the features' embedder (the same model the
chunks were embedded with) and searched through the :class:`twin.ports.Retriever`, which refuses a
query without a profile: this server's profile is the only one it ever asks for (fail closed).
Options behind settings:

- **query expansion** (``TWIN_SERVING__RAG_QUERY_EXPANSION``): a short follow-up ("and why?") is
  also searched together with the previous user turn, and a message with several questions is
  searched per question; hits are merged by their best score;
- **reranking** (``TWIN_SERVING__RAG_RERANK=mmr``): maximal marginal relevance over twice the hits,
  so five near-identical chunks of one article do not crowd out a second source.

Hits under ``rag_min_score`` are dropped (no context beats irrelevant context), and the context is
capped at ``rag_max_context_chars`` so the prompt fits the engine's limit. Links in the message are
read by the :class:`twin.ports.LinkReader` and become ``link`` sources after the owner's chunks.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from twin.domain.features import RetrievalHit, RetrievalQuery
from twin.domain.generation import ChatTurn
from twin.domain.links import LinkResult, find_links
from twin.domain.prompts import Source, Target, detect_target, grounded_system_prompt
from twin.ports import Embedder, LinkReader, Retriever
from twin.serving.schemas import ChatMessage
from twin.settings import ServingSettings

_QUESTION = re.compile(r"[^?]+\?")


@dataclass
class Grounding:
    target: Target
    sources: list[Source] = field(default_factory=list)
    hits: list[RetrievalHit] = field(default_factory=list)  # hits[i] is sources[i]
    links: list[LinkResult] = field(default_factory=list)
    retrieval_s: float = 0.0


def expand_queries(question: str, previous: list[str]) -> list[str]:
    """The question, each of its questions if it asks several, and a short follow-up with the turn before."""
    queries = [question]
    parts = [p.strip() for p in _QUESTION.findall(question) if len(p.split()) >= 3]
    if len(parts) > 1:
        queries += parts
    if previous and len(question.split()) <= 6:
        queries.append(f"{previous[-1]} {question}")
    return list(dict.fromkeys(queries))


def mmr(
    query: list[float], candidates: list[tuple[RetrievalHit, list[float]]], k: int, lam: float = 0.7
) -> list[RetrievalHit]:
    """Maximal marginal relevance: relevance to the query against similarity to what is chosen."""

    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    chosen: list[tuple[RetrievalHit, list[float]]] = []
    pool = list(candidates)
    while pool and len(chosen) < k:
        best = max(
            pool,
            key=lambda c: (
                lam * dot(query, c[1]) - (1 - lam) * max((dot(c[1], s[1]) for s in chosen), default=0.0)
            ),
        )
        chosen.append(best)
        pool.remove(best)
    return [hit for hit, _ in chosen]


def chat_messages(owner: str, messages: Sequence[ChatMessage], grounding: Grounding) -> list[ChatTurn]:
    """What the engine is given: our system prompt (persona, the target's rules, the numbered context),
    the client's own system messages as additional instructions, then the conversation."""
    system = grounded_system_prompt(owner, grounding.target, grounding.sources)
    extra = "\n\n".join(m.text() for m in messages if m.role in ("system", "developer") and m.text().strip())
    if extra:
        system += f"\n\nAdditional instructions from the user:\n{extra}"
    turns = [ChatTurn("system", system)]
    for m in messages:
        if m.role == "user":
            turns.append(ChatTurn("user", m.text()))
        elif m.role == "assistant":
            turns.append(ChatTurn("assistant", m.text()))
    return turns


class Rag:
    def __init__(
        self,
        config: ServingSettings,
        profile: str,
        embedder: Embedder,
        retriever: Callable[[int], AbstractContextManager[Retriever]],
        links: LinkReader,
    ) -> None:
        self.config = config
        self.profile = profile
        self.embedder = embedder
        self.links = links
        self._open_retriever = retriever
        self._local = threading.local()

    def _retriever(self) -> Retriever:
        """This thread's retriever, on its own connection (psycopg connections are not shared)."""
        current: Retriever | None = getattr(self._local, "retriever", None)
        if current is None:
            stack = contextlib.ExitStack()
            current = stack.enter_context(self._open_retriever(self.embedder.dimension))
            self._local.retriever, self._local.stack = current, stack
        return current

    def _drop_retriever(self) -> None:
        stack: contextlib.ExitStack | None = getattr(self._local, "stack", None)
        self._local.retriever = self._local.stack = None
        if stack is not None:
            with contextlib.suppress(Exception):  # the connection is already broken
                stack.close()

    def _search(self, vector: list[float], k: int) -> list[RetrievalHit]:
        query = RetrievalQuery(self.profile, vector, k=k)
        try:
            return self._retriever().search(query)
        except Exception:
            self._drop_retriever()  # a dropped connection: reconnect once
            return self._retriever().search(query)

    def warm_up(self) -> None:
        self.embedder.embed(["warm up"])

    def retrieve(self, question: str, previous: list[str]) -> list[RetrievalHit]:
        c = self.config
        queries = expand_queries(question, previous) if c.rag_query_expansion else [question]
        vectors = self.embedder.embed(queries)
        fetch = c.rag_top_k * (2 if c.rag_rerank == "mmr" else 1)
        best: dict[tuple[Any, int], RetrievalHit] = {}
        for vector in vectors:
            for h in self._search(vector, fetch):
                key = (h.document_id, h.position)
                if key not in best or best[key].score < h.score:
                    best[key] = h
        hits = sorted((h for h in best.values() if h.score >= c.rag_min_score), key=lambda h: -h.score)
        if c.rag_rerank == "mmr" and len(hits) > c.rag_top_k:
            embedded = self.embedder.embed([h.text for h in hits])
            return mmr(vectors[0], list(zip(hits, embedded, strict=True)), c.rag_top_k)
        return hits[: c.rag_top_k]

    def ground(
        self, question: str, previous: list[str], *, target: Target | None, retrieval: bool, fetch_links: bool
    ) -> Grounding:
        c = self.config
        grounding = Grounding(target=target or detect_target(question))
        started = time.perf_counter()
        if retrieval and c.rag_top_k > 0:
            grounding.hits = self.retrieve(question, previous)
        grounding.retrieval_s = time.perf_counter() - started
        if fetch_links and c.fetch_links:
            grounding.links = self.links.read(find_links(question, c.max_links))
        budget, included = c.rag_max_context_chars, []
        for hit in grounding.hits:
            text = hit.text[:budget]
            if not text:
                break
            included.append(hit)
            grounding.sources.append(Source(title=hit.title, url=hit.url, text=text, kind="chunk"))
            budget -= len(text)
        grounding.hits = included  # hits[i] is sources[i]: citations and the request log agree
        for link in grounding.links:
            if link.source is not None:
                grounding.sources.append(link.source)
        return grounding
