"""The ingress's logic, independent of HTTP plumbing: auth, model ids, grounding, the engine stream,
OpenAI-shaped responses, metrics and the request log.

``chat`` answers in the owner's voice: the last user message is grounded (retrieval within this
profile, links read under the crawler's rules), the persona and platform rules and the numbered
context go into the system prompt, and every answer ends with its sources, in the text and in the
``twin.citations`` extension. ``completions`` is OpenAI's raw endpoint: the prompt as it is, on
the chosen weights, no persona and no retrieval. ``embeddings`` uses the feature store's embedder.

The engine is anything with ``generate(request) -> async iterator of dicts`` and ``models()``: the
Ray Serve handle of the engine deployment, or an :class:`EngineServer` in-process (the benchmark).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import struct
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from twin import observability as obs
from twin.domain.profile import TwinProfile
from twin.domain.prompts import Source, citations_block, grounded_system_prompt
from twin.serving.monitoring import RequestLog, RequestRecord
from twin.serving.rag import Grounding, Rag
from twin.serving.registry import parse_model_id
from twin.serving.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    Citation,
    CompletionRequest,
    EmbeddingRequest,
    LinkNote,
    TwinInfo,
    error_body,
)
from twin.settings import Settings

OWNER = "llm-twin"


def chat_messages(owner: str, messages: Sequence[ChatMessage], grounding: Grounding) -> list[dict[str, str]]:
    """What the engine is given: our system prompt (persona, the target's rules, the numbered context),
    the client's own system messages as additional instructions, then the conversation."""
    system = grounded_system_prompt(owner, grounding.target, grounding.sources)
    extra = "\n\n".join(m.text() for m in messages if m.role in ("system", "developer") and m.text().strip())
    if extra:
        system += f"\n\nAdditional instructions from the user:\n{extra}"
    out = [{"role": "system", "content": system}]
    out += [{"role": m.role, "content": m.text()} for m in messages if m.role in ("user", "assistant")]
    return out


class ApiError(Exception):
    """An error with an HTTP status, rendered in OpenAI's error format."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param, code=self.code)


class Engine(Protocol):
    def generate(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...

    async def models(self) -> dict[str, Any]: ...

    async def status(self) -> dict[str, Any]: ...


@dataclass
class _Call:
    """What one request accumulates for its metrics and its log row (in flight until finished)."""

    record: RequestRecord
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    text: list[str] = field(default_factory=list)
    done: bool = False

    def __post_init__(self) -> None:
        obs.SERVE_INFLIGHT.inc()


def load_api_keys(settings: Settings) -> list[str]:
    keys = [k.get_secret_value() for k in settings.serving.api_keys]
    path = settings.serving.api_keys_file
    if path is not None:
        keys += [
            line.strip()
            for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
    return [k for k in keys if k]


class TwinService:
    def __init__(self, profile: TwinProfile, settings: Settings, engine: Engine, *, dsn: str) -> None:
        self.profile = profile
        self.settings = settings
        self.engine = engine
        self.owner = profile.spec.owner.display_name
        self.base_model = profile.spec.base_model
        self.rag = Rag(settings, profile.name, dsn)
        self.log = (
            RequestLog(dsn, log_prompts=settings.serving.log_prompts)
            if settings.serving.request_log
            else None
        )
        self._keys = [k.encode() for k in load_api_keys(settings)]
        if settings.serving.auth == "keys" and not self._keys:
            raise ValueError(
                "no API keys: set TWIN_SERVING__API_KEYS (a JSON list) or TWIN_SERVING__API_KEYS_FILE, "
                "or TWIN_SERVING__AUTH=none on a machine nobody else can reach"
            )

    # ------------------------------------------------------------------------------ plumbing

    def authenticate(self, authorization: str | None) -> None:
        if self.settings.serving.auth == "none":
            return
        scheme, _, token = (authorization or "").partition(" ")
        supplied = token.strip().encode()
        # Compare against every key in constant time: no early exit that a timer could see.
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(supplied, key)
        if scheme.lower() != "bearer" or not supplied or not ok:
            raise ApiError(401, "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.")

    def _selector(self, model: str) -> dict[str, Any]:
        selector = parse_model_id(model, self.profile.name, self.base_model, self.settings.serving.alias)
        if selector is None:
            raise ApiError(
                404, f"The model {model!r} does not exist or you do not have access to it.", param="model"
            )
        return selector.__dict__

    def _max_tokens(self, asked: int | None) -> int:
        s = self.settings.serving
        if asked is not None and asked > s.max_tokens_limit:
            raise ApiError(
                400,
                f"max_tokens is {asked}; this server allows at most {s.max_tokens_limit}",
                param="max_tokens",
            )
        return asked or s.default_max_tokens

    def _engine_request(
        self, req: ChatCompletionRequest | CompletionRequest, request_id: str
    ) -> dict[str, Any]:
        s = self.settings.serving
        return {
            "request_id": request_id,
            "selector": self._selector(req.model),
            "max_tokens": self._max_tokens(req.limit()),
            "temperature": s.default_temperature if req.temperature is None else req.temperature,
            "top_p": 1.0 if req.top_p is None else req.top_p,
            "stop": req.stops(),
            "seed": req.seed,
            "presence_penalty": req.presence_penalty,
            "frequency_penalty": req.frequency_penalty,
        }

    async def _open(self, request: dict[str, Any]) -> tuple[AsyncIterator[dict[str, Any]], dict[str, Any]]:
        """Start generation; raise ApiError if the engine refuses before the first token."""
        stream = self.engine.generate(request)
        try:
            first = await asyncio.wait_for(anext(stream), self.settings.serving.request_timeout_s)
        except TimeoutError as exc:
            raise ApiError(503, "the engine did not start the request in time; try again") from exc
        except Exception as exc:
            name = type(exc).__name__
            if "BackPressure" in name:
                raise ApiError(503, "the engine is at capacity; retry shortly") from exc
            raise ApiError(500, f"the engine failed: {name}: {exc}") from exc
        if first["type"] == "error":
            raise ApiError(first["status"], first["message"], param=first.get("param"))
        return stream, first

    def _finish(self, call: _Call, status: int, error: str | None = None) -> None:
        if call.done:
            return
        call.done = True
        obs.SERVE_INFLIGHT.dec()
        rec = call.record
        rec.status, rec.error = status, error
        rec.latency_s = time.perf_counter() - call.started
        if call.first_token is not None:
            rec.ttft_s = call.first_token - call.started
        rec.response = "".join(call.text) or None
        obs.SERVE_REQUESTS.labels(route=rec.route, status=str(status)).inc()
        obs.SERVE_LATENCY.labels(route=rec.route).observe(rec.latency_s)
        if status >= 400:
            obs.SERVE_ERRORS.labels(status=str(status)).inc()
        if rec.ttft_s is not None:
            obs.SERVE_TTFT.observe(rec.ttft_s)
        if rec.completion_tokens:
            obs.SERVE_TOKENS.inc(rec.completion_tokens)
            decode = rec.latency_s - (rec.ttft_s or 0.0)
            if rec.completion_tokens > 1 and decode > 0:
                obs.SERVE_TOKENS_PER_S.observe((rec.completion_tokens - 1) / decode)
        if self.log is not None:
            self.log.record(rec)

    def failed(self, route: str, model: str, error: ApiError, request_id: str | None = None) -> None:
        """Count and log a request refused before it reached the engine (auth, validation)."""
        call = _Call(RequestRecord(request_id or uuid.uuid4().hex, self.profile.name, route, model))
        self._finish(call, error.status, error.message)

    # ---------------------------------------------------------------------------------- chat

    def _twin_info(self, grounding: Grounding, version: int | None, selector: dict[str, Any]) -> TwinInfo:
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
            alias=selector.get("alias"),
            target=grounding.target.value,
            citations=citations,
            links=[LinkNote(url=link.url, error=link.error) for link in grounding.links if link.error],
        )

    async def chat(self, req: ChatCompletionRequest, request_id: str) -> dict[str, Any] | AsyncIterator[str]:
        call = _Call(RequestRecord(request_id, self.profile.name, "chat", req.model, stream=req.stream))
        try:
            request = self._engine_request(req, request_id)
            users = [m.text() for m in req.messages if m.role == "user"]
            grounding = await asyncio.to_thread(
                self.rag.ground,
                users[-1],
                users[:-1],
                target=req.twin.target,
                retrieval=req.twin.retrieval and self.settings.serving.rag_top_k > 0,
                fetch_links=req.twin.fetch_links,
            )
            obs.SERVE_RETRIEVAL.observe(grounding.retrieval_s)
            rec = call.record
            rec.retrieval_s, rec.target = grounding.retrieval_s, grounding.target.value
            rec.chunk_ids = [[str(h.document_id), h.position] for h in grounding.hits]
            rec.links = [link.url for link in grounding.links]
            request["messages"] = chat_messages(self.owner, req.messages, grounding)
            rec.prompt = users[-1]
            stream, start = await self._open(request)
        except ApiError as exc:
            self._finish(call, exc.status, exc.message)
            raise
        call.record.model_version = start["model_version"]
        call.record.prompt_tokens = start["prompt_tokens"]
        obs.SERVE_MODEL_VERSION.labels(
            profile=self.profile.name, alias=request["selector"].get("alias") or "base"
        ).set(start["model_version"] or 0)
        info = self._twin_info(grounding, start["model_version"], request["selector"])
        sources = citations_block(grounding.sources)
        if req.stream:
            events = self._chat_stream(req, call, stream=stream, start=start, info=info, sources=sources)
            return self._streamed(call, events)
        return await self._chat_once(req, call, stream=stream, start=start, info=info, sources=sources)

    async def _collect(
        self, call: _Call, stream: AsyncIterator[dict[str, Any]]
    ) -> AsyncIterator[tuple[str, str | None]]:
        """(text, finish_reason) pieces; counts tokens and times the first one. Every failure
        surfaces as an :class:`ApiError` (the engine's own, or 503 past the request timeout)."""
        tokens = 0
        try:
            async with asyncio.timeout(self.settings.serving.request_timeout_s):
                async for item in stream:
                    if item["type"] == "error":
                        raise ApiError(item["status"], item["message"])
                    tokens += item["tokens"]
                    if item["text"] and call.first_token is None:
                        call.first_token = time.perf_counter()
                    call.record.completion_tokens = tokens
                    if item["finish_reason"] is not None:
                        call.record.finish_reason = item["finish_reason"]
                    if item["text"]:
                        call.text.append(item["text"])
                    yield item["text"], item["finish_reason"]
        except TimeoutError as exc:
            raise ApiError(503, "generation timed out") from exc

    async def _drain(self, call: _Call, stream: AsyncIterator[dict[str, Any]]) -> str:
        """Runs a non-streamed generation to its end (the text collects in ``call.text``) and
        returns the finish reason; a failure is recorded before it propagates."""
        finish: str | None = None
        try:
            async for _, reason in self._collect(call, stream):
                finish = reason or finish
        except ApiError as exc:
            self._finish(call, exc.status, exc.message)
            raise
        return finish or "stop"

    async def _streamed(self, call: _Call, events: AsyncIterator[str]) -> AsyncIterator[str]:
        """A streamed response: ``events`` then ``[DONE]``, or an error event where generation
        fails (OpenAI's clients raise on it mid-stream); records how the stream ended."""
        status, error = 200, None
        try:
            async for event in events:
                yield event
            yield "data: [DONE]\n\n"
        except ApiError as exc:
            status, error = exc.status, exc.message
            yield _sse(exc.body())
        except (asyncio.CancelledError, GeneratorExit):
            status, error = 499, "the client went away"  # nginx's convention: closed by the client
            raise
        finally:
            self._finish(call, status, error)

    async def _chat_once(
        self,
        req: ChatCompletionRequest,
        call: _Call,
        *,
        stream: AsyncIterator[dict[str, Any]],
        start: dict[str, Any],
        info: TwinInfo,
        sources: str,
    ) -> dict[str, Any]:
        finish = await self._drain(call, stream)
        text = "".join(call.text) + sources
        completion = call.record.completion_tokens or 0
        body = {
            "id": f"chatcmpl-{call.record.request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                }
            ],
            "usage": _usage(start["prompt_tokens"], completion),
            "twin": _twin_json(info),
        }
        self._finish(call, 200)
        return body

    async def _chat_stream(
        self,
        req: ChatCompletionRequest,
        call: _Call,
        *,
        stream: AsyncIterator[dict[str, Any]],
        start: dict[str, Any],
        info: TwinInfo,
        sources: str,
    ) -> AsyncIterator[str]:
        chunk_id, created = f"chatcmpl-{call.record.request_id}", int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            payload = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": req.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return _sse(payload)

        yield chunk({"role": "assistant", "content": ""})
        finish: str | None = None
        async for text, reason in self._collect(call, stream):
            if text:
                yield chunk({"content": text})
            finish = reason or finish
        if sources:
            yield chunk({"content": sources})
        yield chunk({}, finish or "stop", twin=_twin_json(info))
        if req.stream_options and req.stream_options.include_usage:
            usage = _usage(start["prompt_tokens"], call.record.completion_tokens or 0)
            yield _sse(
                {
                    "id": chunk_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": req.model,
                    "choices": [],
                    "usage": usage,
                }
            )

    # ----------------------------------------------------------------------------- completions

    async def completions(
        self, req: CompletionRequest, request_id: str
    ) -> dict[str, Any] | AsyncIterator[str]:
        call = _Call(
            RequestRecord(request_id, self.profile.name, "completions", req.model, stream=req.stream)
        )
        try:
            request = self._engine_request(req, request_id)
            request["prompt"] = req.text()
            call.record.prompt = req.text()
            stream, start = await self._open(request)
        except ApiError as exc:
            self._finish(call, exc.status, exc.message)
            raise
        call.record.model_version = start["model_version"]
        call.record.prompt_tokens = start["prompt_tokens"]
        info = TwinInfo(model_version=start["model_version"], alias=request["selector"].get("alias"))
        cid, created = f"cmpl-{request_id}", int(time.time())
        if not req.stream:
            finish = await self._drain(call, stream)
            self._finish(call, 200)
            return {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": req.model,
                "choices": [
                    {
                        "index": 0,
                        "text": "".join(call.text),
                        "finish_reason": finish,
                        "logprobs": None,
                    }
                ],
                "usage": _usage(start["prompt_tokens"], call.record.completion_tokens or 0),
                "twin": _twin_json(info),
            }
        return self._streamed(call, self._completion_stream(req, call, stream, cid, created))

    async def _completion_stream(
        self,
        req: CompletionRequest,
        call: _Call,
        stream: AsyncIterator[dict[str, Any]],
        cid: str,
        created: int,
    ) -> AsyncIterator[str]:
        async for text, reason in self._collect(call, stream):
            if text or reason:
                choice = {"index": 0, "text": text, "finish_reason": reason, "logprobs": None}
                yield _sse(
                    {
                        "id": cid,
                        "object": "text_completion",
                        "created": created,
                        "model": req.model,
                        "choices": [choice],
                    }
                )

    # ------------------------------------------------------------------------------ embeddings

    def embedding_models(self) -> list[str]:
        name = self.settings.features.embedding_model
        return [name] if "/" in name else [name, f"sentence-transformers/{name}"]

    async def embeddings(self, req: EmbeddingRequest, request_id: str) -> dict[str, Any]:
        call = _Call(RequestRecord(request_id, self.profile.name, "embeddings", req.model))
        try:
            if req.model not in self.embedding_models():
                raise ApiError(
                    404,
                    f"The model {req.model!r} does not exist: embeddings use {self.embedding_models()[0]!r}",
                    param="model",
                )
            embedder = self.rag.embedder
            if req.dimensions is not None and req.dimensions != embedder.dimension:
                raise ApiError(
                    400, f"{req.model} makes {embedder.dimension}-d vectors only", param="dimensions"
                )
            texts = req.texts()
            vectors, tokens = await asyncio.to_thread(
                lambda: (embedder.embed(texts), sum(embedder.count_tokens(t) for t in texts))
            )
        except ApiError as exc:
            self._finish(call, exc.status, exc.message)
            raise
        call.record.prompt_tokens = tokens
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(v, req.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        self._finish(call, 200)
        return {
            "object": "list",
            "data": data,
            "model": req.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    # ---------------------------------------------------------------------------------- models

    async def models(self) -> dict[str, Any]:
        listing = await self.engine.models()
        created = int(time.time())
        name = f"twin-{self.profile.name}"
        base = listing["base_model"]
        cards = [
            {
                "id": base,
                "object": "model",
                "created": created,
                "owned_by": OWNER,
                "root": base,
                "version": None,
                "aliases": [],
            },
        ]
        current = listing["current"]
        cards.append(
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": OWNER,
                "root": base,
                "version": current,
                "aliases": [listing["alias"]],
            }
        )
        aliases = sorted({a for v in listing["versions"] for a in v["aliases"]})
        by_alias = {a: v["version"] for v in listing["versions"] for a in v["aliases"]}
        for alias in aliases:
            cards.append(
                {
                    "id": f"{name}@{alias}",
                    "object": "model",
                    "created": created,
                    "owned_by": OWNER,
                    "root": base,
                    "version": by_alias[alias],
                    "aliases": [alias],
                }
            )
        for v in listing["versions"]:
            cards.append(
                {
                    "id": f"{name}@{v['version']}",
                    "object": "model",
                    "created": created,
                    "owned_by": OWNER,
                    "root": base,
                    "version": v["version"],
                    "aliases": v["aliases"],
                }
            )
        return {"object": "list", "data": cards}


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _twin_json(info: TwinInfo) -> dict[str, Any]:
    return info.model_dump()


def _sse(payload: dict[str, Any]) -> str:
    import json

    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":  # OpenAI's: little-endian float32, base64
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


__all__ = ["ApiError", "Engine", "Source", "TwinService"]
