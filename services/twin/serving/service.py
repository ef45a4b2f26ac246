"""The ingress's logic, independent of HTTP plumbing: it runs each OpenAI route through the parts
that own one concern each (:mod:`~twin.serving.access` keys and model ids,
:mod:`~twin.serving.grounding` retrieval and the prompt, :mod:`~twin.serving.rendering` OpenAI's
bodies and SSE, :mod:`~twin.serving.accounting` metrics and the request log).

``chat`` answers in the owner's voice: the last user message is grounded (retrieval within this
profile, links read under the crawler's rules), the persona and platform rules and the numbered
context go into the system prompt, and the sources come back in ``twin.citations``. ``content`` is
the model's output alone; the ``Sources:`` block is added to it only when the request
(``twin.inline_citations``) or the setting (``serving.inline_citations``) asks, and only where it
keeps the client's ``max_tokens`` and ``stop`` true (see :func:`twin.domain.generation.footer_fits`).
``completions`` is OpenAI's raw endpoint: the prompt as it is, on the chosen weights, no persona
and no retrieval. ``embeddings`` uses the feature store's embedder.

The engine is an :class:`EngineClient`: the engine deployment as the ingress sees it, typed
requests in and typed events out. It is not a second engine protocol: the one engine protocol is
:class:`twin.ports.ChatEngine` (token ids in, text pieces out), which the engine deployment
(:class:`twin.serving.engine_server.EngineServer`) drives; ``EngineClient`` is that deployment's
interface, implemented by the deployment itself (in-process: the benchmark, unit tests) and by its
Ray Serve handle (:mod:`twin.serving.app`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

from twin.domain.generation import (
    EngineDelta,
    EngineStatus,
    FinishReason,
    GenerationEvent,
    GenerationFailure,
    GenerationRequest,
    GenerationStart,
    ServedModels,
)
from twin.domain.profile import TwinProfile
from twin.domain.prompts import citations_block
from twin.ports import ServingDeps
from twin.serving import rendering
from twin.serving.access import Access
from twin.serving.accounting import Accounting, Call
from twin.serving.grounding import Rag, chat_messages
from twin.serving.schemas import (
    ApiError,
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
    ModelList,
    TwinInfo,
)
from twin.settings import ServingSettings


class EngineClient(Protocol):
    """The engine deployment, as the ingress calls it."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """A :class:`GenerationStart` or a :class:`GenerationFailure` first, then the pieces."""
        ...

    async def models(self) -> ServedModels: ...

    async def status(self) -> EngineStatus: ...


class TwinService:
    def __init__(
        self,
        profile: TwinProfile,
        config: ServingSettings,
        engine: EngineClient,
        *,
        access: Access,
        rag: Rag,
        accounting: Accounting,
    ) -> None:
        self.profile = profile
        self.config = config
        self.engine = engine
        self.access = access
        self.rag = rag
        self.accounting = accounting

    def authenticate(self, route: str, model: str, authorization: str | None) -> None:
        """Let the request through, or count, log and raise its 401."""
        try:
            self.access.authenticate(authorization)
        except ApiError as exc:
            self.accounting.refused(route, model, exc)
            raise

    # -------------------------------------------------------------------------------- routes

    async def chat(self, req: ChatCompletionRequest, request_id: str) -> ChatCompletion | AsyncIterator[str]:
        call = self.accounting.open("chat", req.model, request_id, stream=req.stream)
        try:
            selector, params = self.access.resolve(req)  # refuse before the cost of retrieval
            users = [m.text() for m in req.messages if m.role == "user"]
            options = req.twin
            grounding = await asyncio.to_thread(
                self.rag.ground,
                users[-1],
                users[:-1],
                target=options.target,
                retrieval=options.retrieval,
                fetch_links=options.fetch_links,
            )
            call.grounded(grounding, users[-1])
            inline = (
                self.config.inline_citations if options.inline_citations is None else options.inline_citations
            )
            messages = chat_messages(self.profile.spec.owner.display_name, req.messages, grounding)
            request = GenerationRequest(
                request_id,
                selector,
                params,
                messages=tuple(messages),
                footer=citations_block(grounding.sources) if inline else "",
            )
            stream, start = await self._open(request)
        except Exception as exc:
            self.accounting.failed(call, exc)
            raise
        call.started_generating(start)
        self.accounting.serving_version(selector.alias, start.model_version)
        info = rendering.twin_info(grounding, start.model_version, selector.alias)
        if req.stream:
            return self._streamed(call, self._chat_events(req, call, stream, start, info))
        finish = await self._drain(call, stream)
        tokens = rendering.usage(start.prompt_tokens, call.completion_tokens)
        reply = rendering.chat_completion(
            request_id, req.model, text="".join(call.text), finish=finish, tokens=tokens, info=info
        )
        self.accounting.finish(call, 200)
        return reply

    async def _chat_events(
        self,
        req: ChatCompletionRequest,
        call: Call,
        stream: AsyncIterator[GenerationEvent],
        start: GenerationStart,
        info: TwinInfo,
    ) -> AsyncIterator[str]:
        chunks = rendering.ChatChunks(call.record.request_id, req.model)
        yield chunks.opening()
        finish: FinishReason | None = None
        async for delta in self._deltas(call, stream):
            if delta.text:
                yield chunks.content(delta.text)
            finish = delta.finish_reason or finish
        yield chunks.final(finish or "stop", info)
        if req.stream_options and req.stream_options.include_usage:
            yield chunks.usage(rendering.usage(start.prompt_tokens, call.completion_tokens))

    async def completions(self, req: CompletionRequest, request_id: str) -> Completion | AsyncIterator[str]:
        call = self.accounting.open("completions", req.model, request_id, stream=req.stream)
        try:
            selector, params = self.access.resolve(req)
            call.record.prompt = req.text()
            stream, start = await self._open(
                GenerationRequest(request_id, selector, params, prompt=req.text())
            )
        except Exception as exc:
            self.accounting.failed(call, exc)
            raise
        call.started_generating(start)
        if req.stream:
            return self._streamed(call, self._completion_events(req, call, stream))
        finish = await self._drain(call, stream)
        tokens = rendering.usage(start.prompt_tokens, call.completion_tokens)
        info = rendering.twin_info(None, start.model_version, selector.alias)
        reply = rendering.completion(
            request_id, req.model, text="".join(call.text), finish=finish, tokens=tokens, info=info
        )
        self.accounting.finish(call, 200)
        return reply

    async def _completion_events(
        self, req: CompletionRequest, call: Call, stream: AsyncIterator[GenerationEvent]
    ) -> AsyncIterator[str]:
        chunks = rendering.CompletionChunks(call.record.request_id, req.model)
        async for delta in self._deltas(call, stream):
            if delta.text or delta.finish_reason:
                yield chunks.piece(delta.text, delta.finish_reason)

    def embedding_models(self) -> list[str]:
        """The ids ``/v1/embeddings`` accepts (and ``/v1/models`` lists): the features' model, by
        its own name and, for a short sentence-transformers name, by its hub name too."""
        name = self.rag.embedder.model_name
        return [name] if "/" in name else [name, f"sentence-transformers/{name}"]

    async def embeddings(self, req: EmbeddingRequest, request_id: str) -> EmbeddingList:
        call = self.accounting.open("embeddings", req.model, request_id)
        embedder = self.rag.embedder
        try:
            accepted = self.embedding_models()
            if req.model not in accepted:
                message = f"The model {req.model!r} does not exist: embeddings use {accepted[0]!r}"
                raise ApiError(404, message, param="model")
            if req.dimensions is not None and req.dimensions != embedder.dimension:
                raise ApiError(
                    400, f"{req.model} makes {embedder.dimension}-d vectors only", param="dimensions"
                )
            texts = req.texts()
            vectors, tokens = await asyncio.to_thread(
                lambda: (embedder.embed(texts), sum(embedder.count_tokens(t) for t in texts))
            )
        except Exception as exc:
            self.accounting.failed(call, exc)
            raise
        call.record.prompt_tokens = tokens
        self.accounting.finish(call, 200)
        return rendering.embedding_list(vectors, req.model, req.encoding_format, tokens)

    async def models(self) -> ModelList:
        return rendering.model_list(await self.engine.models(), self.profile.name, self.embedding_models())

    # ------------------------------------------------------------------------------ plumbing

    async def _open(
        self, request: GenerationRequest
    ) -> tuple[AsyncIterator[GenerationEvent], GenerationStart]:
        """Start generation; raise ApiError if the engine refuses before the first token."""
        stream = self.engine.generate(request)
        try:
            first = await asyncio.wait_for(anext(stream), self.config.request_timeout_s)
        except TimeoutError as exc:
            raise ApiError(503, "the engine did not start the request in time; try again") from exc
        except Exception as exc:
            name = type(exc).__name__
            if "BackPressure" in name:  # Ray Serve's: every replica has max_ongoing_requests
                raise ApiError(503, "the engine is at capacity; retry shortly") from exc
            raise ApiError(500, f"the engine failed: {name}: {exc}") from exc
        if isinstance(first, GenerationFailure):
            raise ApiError(first.status, first.message, param=first.param)
        if not isinstance(first, GenerationStart):
            raise ApiError(500, f"the engine answered {type(first).__name__} before starting")
        return stream, first

    async def _deltas(self, call: Call, stream: AsyncIterator[GenerationEvent]) -> AsyncIterator[EngineDelta]:
        """The answer's pieces, counted into ``call``. Every failure surfaces as an ApiError (the
        engine's own, or 503 past the request timeout)."""
        try:
            async with asyncio.timeout(self.config.request_timeout_s):
                async for event in stream:
                    if isinstance(event, GenerationFailure):
                        raise ApiError(event.status, event.message, param=event.param)
                    if isinstance(event, EngineDelta):
                        call.add(event)
                        yield event
        except TimeoutError as exc:
            raise ApiError(503, "generation timed out") from exc

    async def _drain(self, call: Call, stream: AsyncIterator[GenerationEvent]) -> FinishReason:
        """Runs a non-streamed generation to its end (the text collects in ``call.text``) and
        returns the finish reason; a failure is recorded before it propagates."""
        finish: FinishReason | None = None
        try:
            async for delta in self._deltas(call, stream):
                finish = delta.finish_reason or finish
        except Exception as exc:
            self.accounting.failed(call, exc)
            raise
        return finish or "stop"

    async def _streamed(self, call: Call, events: AsyncIterator[str]) -> AsyncIterator[str]:
        """A streamed response: ``events`` then ``[DONE]``, or an error event where generation
        fails (OpenAI's clients raise on it mid-stream); records how the stream ended."""
        status, error = 200, None
        try:
            async for event in events:
                yield event
            yield rendering.DONE
        except ApiError as exc:
            status, error = exc.status, exc.message
            yield rendering.sse(exc.body())
        except (asyncio.CancelledError, GeneratorExit):
            status, error = 499, "the client went away"  # nginx's convention: closed by the client
            raise
        except Exception as exc:  # the engine replica died mid-stream: say so rather than hang up
            failure = ApiError(500, f"the engine failed: {type(exc).__name__}: {exc}")
            status, error = failure.status, failure.message
            yield rendering.sse(failure.body())
        finally:
            self.accounting.finish(call, status, error)


def build_service(
    profile: TwinProfile, config: ServingSettings, deps: ServingDeps, engine: EngineClient
) -> TwinService:
    """The ingress's service on the adapters ``deps`` builds (in the calling process)."""
    rag = Rag(config, profile.name, deps.embedder(), deps.retriever, deps.link_reader())
    return TwinService(
        profile,
        config,
        engine,
        access=Access(profile, config, deps.api_keys()),
        rag=rag,
        accounting=Accounting(profile.name, deps.request_log()),
    )
