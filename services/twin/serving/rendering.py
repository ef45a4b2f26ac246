"""OpenAI rendering: every response body built as a :mod:`twin.serving.schemas` model, so what is
sent is what the served OpenAPI document describes (and a field cannot be misspelt in one place).

Non-streamed bodies go out as JSON (:func:`body`), streamed ones as server-sent events
(:func:`sse`), one model per event; the top-level extensions a chunk does not carry (``usage``
before the last chunk, ``twin`` outside the final one) are left out rather than sent as null.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from twin.domain.generation import FinishReason, ServedModels
from twin.domain.registry import model_name
from twin.serving.grounding import Grounding
from twin.serving.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChunkChoice,
    Citation,
    Completion,
    CompletionChoice,
    Delta,
    Embedding,
    EmbeddingList,
    EmbeddingUsage,
    LinkNote,
    ModelCard,
    ModelList,
    TwinInfo,
    Usage,
)

OWNER = "llm-twin"
_OMITTED_WHEN_NULL = ("usage", "twin")


def body(model: BaseModel) -> dict[str, Any]:
    """A response model as a JSON-ready dict."""
    return model.model_dump(
        mode="json", exclude={k for k in _OMITTED_WHEN_NULL if getattr(model, k, 0) is None}
    )


def sse(model: BaseModel | dict[str, Any]) -> str:
    """One server-sent event carrying ``model``."""
    import json

    payload = body(model) if isinstance(model, BaseModel) else model
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


DONE = "data: [DONE]\n\n"


def usage(prompt: int, completion: int) -> Usage:
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def twin_info(grounding: Grounding | None, version: int | None, alias: str | None) -> TwinInfo:
    """The ``twin`` extension: the version that answered and, for chat, the sources as citations
    (numbered as in the prompt) and the links that could not be read."""
    if grounding is None:
        return TwinInfo(model_version=version, alias=alias)
    citations = []
    for n, source in enumerate(grounding.sources, 1):
        hit = grounding.hits[n - 1] if source.kind == "chunk" and n - 1 < len(grounding.hits) else None
        citations.append(
            Citation(
                index=n,
                title=source.title,
                url=source.url,
                kind="chunk" if source.kind == "chunk" else "link",
                score=round(hit.score, 4) if hit else None,
                document_id=str(hit.document_id) if hit else None,
                position=hit.position if hit else None,
            )
        )
    return TwinInfo(
        model_version=version,
        alias=alias,
        target=grounding.target.value,
        citations=citations,
        links=[LinkNote(url=link.url, error=link.error) for link in grounding.links if link.error],
    )


def chat_completion(
    request_id: str, model: str, *, text: str, finish: FinishReason, tokens: Usage, info: TwinInfo
) -> ChatCompletion:
    return ChatCompletion(
        id=f"chatcmpl-{request_id}",
        created=int(time.time()),
        model=model,
        choices=[ChatChoice(message=AssistantMessage(content=text), finish_reason=finish)],
        usage=tokens,
        twin=info,
    )


class ChatChunks:
    """The SSE events of one streamed chat completion (one id and creation time for all)."""

    def __init__(self, request_id: str, model: str) -> None:
        self.id, self.created, self.model = f"chatcmpl-{request_id}", int(time.time()), model

    def _chunk(self, choices: list[ChunkChoice], **extra: Any) -> str:
        return sse(
            ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=choices, **extra)
        )

    def opening(self) -> str:
        return self._chunk([ChunkChoice(delta=Delta(role="assistant", content=""))])

    def content(self, text: str) -> str:
        return self._chunk([ChunkChoice(delta=Delta(content=text))])

    def final(self, finish: FinishReason, info: TwinInfo) -> str:
        return self._chunk([ChunkChoice(delta=Delta(), finish_reason=finish)], twin=info)

    def usage(self, tokens: Usage) -> str:
        return self._chunk([], usage=tokens)


def completion(
    request_id: str, model: str, *, text: str, finish: FinishReason, tokens: Usage, info: TwinInfo
) -> Completion:
    return Completion(
        id=f"cmpl-{request_id}",
        created=int(time.time()),
        model=model,
        choices=[CompletionChoice(text=text, finish_reason=finish)],
        usage=tokens,
        twin=info,
    )


class CompletionChunks:
    """The SSE events of one streamed completion."""

    def __init__(self, request_id: str, model: str) -> None:
        self.id, self.created, self.model = f"cmpl-{request_id}", int(time.time()), model

    def piece(self, text: str, finish: FinishReason | None) -> str:
        choice = CompletionChoice(text=text, finish_reason=finish)
        return sse(Completion(id=self.id, created=self.created, model=self.model, choices=[choice]))


def embedding_list(vectors: Sequence[list[float]], model: str, encoding: str, tokens: int) -> EmbeddingList:
    return EmbeddingList(
        data=[Embedding(index=i, embedding=_encode(v, encoding)) for i, v in enumerate(vectors)],
        model=model,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":  # OpenAI's: little-endian float32, base64
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def model_list(served: ServedModels, profile: str, embedding_models: Sequence[str]) -> ModelList:
    """Every id a request may name: the base model, the twin (on the serving alias), each alias and
    each version, then the embedding model under every name ``/v1/embeddings`` accepts."""
    created, name, base = int(time.time()), model_name(profile), served.base_model

    def card(id: str, version: int | None = None, aliases: Sequence[str] = ()) -> ModelCard:
        return ModelCard(
            id=id, created=created, owned_by=OWNER, root=base, version=version, aliases=list(aliases)
        )

    cards = [card(base), card(name, served.current, [served.alias])]
    by_alias = {a: v.version for v in served.versions for a in v.aliases}
    cards += [card(f"{name}@{alias}", by_alias[alias], [alias]) for alias in sorted(by_alias)]
    cards += [card(f"{name}@{v.version}", v.version, v.aliases) for v in served.versions]
    cards += [
        ModelCard(id=m, created=created, owned_by=OWNER, root=embedding_models[0], kind="embedding")
        for m in embedding_models
    ]
    return ModelList(data=cards)
