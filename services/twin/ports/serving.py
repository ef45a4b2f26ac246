"""Serving's ports: the chat engine, link reading, the request log and the Serve deployments' factories.

Part of :mod:`twin.ports`; import them from there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from twin.domain.generation import AdapterRef, ChatTurn, EngineDelta, GenerationParams, RequestRecord
from twin.domain.links import LinkResult
from twin.ports.stores import Embedder, Retriever
from twin.ports.training import ModelRegistry


class ChatEngine(Protocol):
    """The one engine protocol: generation on a base model with LoRA adapters loaded and unloaded
    at runtime. vLLM (:mod:`twin.adapters.vllm_engine`) and transformers
    (:mod:`twin.adapters.transformers_engine`) implement it; the engine deployment
    (:mod:`twin.serving.engine_server`) drives it. Prompts are token ids, so the engine's own
    tokenizer builds them (:meth:`chat_prompt`, :meth:`text_prompt`)."""

    name: str
    quantization: str | None  # the weights' quantization as the engine runs it (None: unquantized)

    def chat_prompt(self, messages: Sequence[ChatTurn]) -> list[int]:
        """The conversation through the base model's chat template, the assistant's turn opened."""
        ...

    def text_prompt(self, text: str) -> list[int]:
        """A raw prompt's token ids; an empty one starts from the model's start token."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes as output (no special tokens)."""
        ...

    async def load_adapter(self, adapter: AdapterRef) -> None:
        """Make ``adapter`` usable; a broken adapter raises and leaves the engine serving."""
        ...

    async def unload_adapter(self, adapter: AdapterRef) -> None: ...

    def generate(
        self, prompt_ids: list[int], params: GenerationParams, adapter: AdapterRef | None, request_id: str
    ) -> AsyncIterator[EngineDelta]:
        """Stream the completion of ``prompt_ids`` (with ``adapter``, or the base model); stop
        sequences are cut from the text, the last piece carries ``finish_reason``."""
        ...

    async def shutdown(self) -> None: ...

    def close(self) -> None:
        """Release the engine now (from a finaliser: no event loop needed)."""
        ...


class LinkReader(Protocol):
    """Reads the links of a user's message under the crawler's rules (the address guard, size and
    time caps, HTML only): :class:`twin.adapters.link_reader.HttpLinkReader`."""

    def read(self, urls: Sequence[str]) -> list[LinkResult]:
        """One result per URL, in order: its main text as a ``link`` source, or why not. Never
        raises: a link that cannot be read never fails the answer."""
        ...


class RequestLog(Protocol):
    """Where served requests are kept (``serving_requests`` in Postgres:
    :class:`twin.adapters.request_log.PostgresRequestLog`), written off the request path."""

    def record(self, record: RequestRecord) -> None:
        """Queue one finished request; never blocks and never raises (a lost row is counted)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ServingDeps:
    """What the Serve deployments build in their replicas, made by :func:`twin.wiring.serving_deps`.

    Factories, not instances, and picklable: Ray ships them to each replica, which builds its own
    engine, registry client, embedder and connections where it runs (a test passes its own, e.g.
    a fake engine).
    """

    engine: Callable[[], ChatEngine]  # the engine deployment's engine, on the profile's base model
    registry: Callable[[], ModelRegistry]  # the engine deployment follows the serving alias in it
    embedder: Callable[[], Embedder]  # the features' model: queries and ``/v1/embeddings``
    # A retriever on a connection of its own (one per ingress thread), checked against the dimension.
    retriever: Callable[[int], AbstractContextManager[Retriever]]
    link_reader: Callable[[], LinkReader]
    request_log: Callable[[], RequestLog | None]  # None: the request log is off
    api_keys: Callable[[], list[str]]  # read in the replica (a mounted Secret may change)
