"""Grounding: the context an answer is built on, always from the requesting profile's own writing.

The question (the last user message) is embedded with the features' embedder class and model,
and retrieved with :class:`twin.adapters.pgvector_store.PgRetriever`, the one retrieval path, which
refuses a query without a profile: this server's profile is the only one it ever asks for (fail
closed). Options behind settings:

- **query expansion** (``TWIN_SERVING__RAG_QUERY_EXPANSION``): a short follow-up ("and why?") is
  also searched together with the previous user turn, and a message with several questions is
  searched per question; hits are merged by their best score;
- **reranking** (``TWIN_SERVING__RAG_RERANK=mmr``): maximal marginal relevance over twice the hits,
  so five near-identical chunks of one article do not crowd out a second source.

Hits under ``rag_min_score`` are dropped (no context beats irrelevant context), and the context is
capped at ``rag_max_context_chars`` so the prompt fits the engine's limit.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from twin.domain.features import RetrievalHit, RetrievalQuery
from twin.domain.prompts import Source, Target, detect_target
from twin.serving.links import LinkReader, LinkResult, find_links
from twin.settings import Settings

_QUESTION = re.compile(r"[^?]+\?")


@dataclass
class Grounding:
    target: Target
    sources: list[Source] = field(default_factory=list)
    hits: list[RetrievalHit] = field(default_factory=list)
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


class Rag:
    def __init__(self, settings: Settings, profile: str, dsn: str) -> None:
        from twin.adapters.embedders import SentenceTransformerEmbedder

        self.settings = settings
        self.profile = profile
        self.dsn = dsn
        self.embedder = SentenceTransformerEmbedder(settings.features.embedding_model)
        s, c = settings.serving, settings.crawler
        self.links = LinkReader(
            c.allowed_networks,
            user_agent=c.user_agent,
            timeout_s=s.link_timeout_s,
            max_bytes=s.link_max_bytes,
            max_redirects=c.max_redirects,
            max_chars=s.link_max_chars,
        )
        self._local = threading.local()

    def _retriever(self) -> Any:
        """A retriever on this thread's own connection (psycopg connections are not shared)."""
        from twin.adapters.pgvector_store import PgRetriever
        from twin.adapters.postgres import connect

        retriever = getattr(self._local, "retriever", None)
        conn = getattr(self._local, "conn", None)
        if retriever is None or conn is None or conn.closed:
            conn = connect(self.dsn, timeout_s=10)
            self._local.conn = conn
            retriever = self._local.retriever = PgRetriever(conn, dimension=self.embedder.dimension)
        return retriever

    def warm_up(self) -> None:
        self.embedder.embed(["warm up"])

    def retrieve(self, question: str, previous: list[str]) -> list[RetrievalHit]:
        s = self.settings.serving
        queries = expand_queries(question, previous) if s.rag_query_expansion else [question]
        vectors = self.embedder.embed(queries)
        fetch = s.rag_top_k * (2 if s.rag_rerank == "mmr" else 1)
        best: dict[tuple[Any, int], RetrievalHit] = {}
        for vector in vectors:
            try:
                hits = self._retriever().search(RetrievalQuery(self.profile, vector, k=fetch))
            except Exception:
                self._local.retriever = None  # a dropped connection: reconnect once
                hits = self._retriever().search(RetrievalQuery(self.profile, vector, k=fetch))
            for h in hits:
                key = (h.document_id, h.position)
                if key not in best or best[key].score < h.score:
                    best[key] = h
        hits = sorted((h for h in best.values() if h.score >= s.rag_min_score), key=lambda h: -h.score)
        if s.rag_rerank == "mmr" and len(hits) > s.rag_top_k:
            embedded = self.embedder.embed([h.text for h in hits])
            return mmr(vectors[0], list(zip(hits, embedded, strict=True)), s.rag_top_k)
        return hits[: s.rag_top_k]

    def ground(
        self, question: str, previous: list[str], *, target: Target | None, retrieval: bool, fetch_links: bool
    ) -> Grounding:
        s = self.settings.serving
        grounding = Grounding(target=target or detect_target(question))
        started = time.perf_counter()
        if retrieval:
            grounding.hits = self.retrieve(question, previous)
        grounding.retrieval_s = time.perf_counter() - started
        if fetch_links and s.fetch_links:
            grounding.links = self.links.read(find_links(question, s.max_links))
        budget, included = s.rag_max_context_chars, []
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
