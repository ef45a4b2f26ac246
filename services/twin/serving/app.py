"""The Ray Serve application: an ingress deployment (FastAPI: the OpenAI API, auth, RAG, metrics,
request log) in front of an engine deployment (the chat engine and its adapters).

Both are built from plain configuration (the profile, :class:`~twin.settings.ServingSettings`) and
the factories of :class:`twin.ports.ServingDeps` (made by :func:`twin.wiring.serving_deps`), which
each replica calls where it runs: nothing here knows which technology sits behind a port. The
ingress reaches the engine deployment through its handle, wrapped as
:class:`twin.serving.service.EngineClient` (typed requests and events, no dicts).

Both autoscale between ``spec.serving.minReplicas`` and ``maxReplicas`` on
``targetOngoingRequests``. Routes:

- ``POST /v1/chat/completions``, ``POST /v1/completions`` (both streaming over SSE or not),
  ``POST /v1/embeddings``, ``GET /v1/models``: OpenAI's API, with bearer keys;
- ``GET /health`` (liveness: 200 while the process serves), ``GET /ready`` (200 once the engine has
  loaded the registry's adapter, 503 before), ``GET /metrics`` (Prometheus; no key, as scrapers expect).

Every error, including malformed JSON and validation failures, is OpenAI's error object with
status 400 (not FastAPI's 422), 401, 404, 503...
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, cast

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from twin.domain.generation import EngineStatus, GenerationEvent, GenerationRequest, ServedModels
from twin.domain.profile import TwinProfile
from twin.ports import ServingDeps
from twin.serving import rendering
from twin.serving.engine_server import EngineServer
from twin.serving.schemas import (
    ApiError,
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
    ErrorResponse,
    ModelList,
    ReadyStatus,
    error_body,
)
from twin.serving.service import build_service
from twin.settings import ServingSettings

log = logging.getLogger(__name__)

api = FastAPI(
    title="LLM Twin",
    version="1",
    description="An OpenAI-compatible API that answers in the owner's voice, grounded in their writing.",
)
bearer = HTTPBearer(auto_error=False, description="This profile's API key")
# FastAPI reads the dependency from the annotation: declared once, and the OpenAPI document gets
# the bearer security scheme (schemathesis and client generators see how to authenticate).
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, "Invalid request"),
        (401, "Invalid API key"),
        (404, "Unknown model"),
        (503, "Busy"),
    )
}
_SSE = {"text/event-stream": {"schema": {"type": "string"}}}
# The generation routes answer with JSON, or with SSE chunks when the request streams.
_GENERATION: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    200: {"content": _SSE, "description": "A completion, or SSE chunks when streaming"},
}


@api.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    message = f"{'.'.join(loc) + ': ' if loc else ''}{first.get('msg', 'invalid request')}"
    return JSONResponse(error_body(400, message, param=".".join(loc) or None), status_code=400)


@api.exception_handler(StarletteHTTPException)
async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code)


@api.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)
    return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}"), status_code=500)


class _HandleEngine:
    """The engine deployment behind its Ray Serve handle, as a :class:`~twin.serving.service.EngineClient`
    (the events cross the hop pickled, as the same typed values)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        return cast(
            "AsyncIterator[GenerationEvent]", self._handle.options(stream=True).generate.remote(request)
        )

    async def models(self) -> ServedModels:
        return cast(ServedModels, await self._handle.models.remote())

    async def status(self) -> EngineStatus:
        return cast(EngineStatus, await self._handle.status.remote())


def _respond(result: BaseModel | AsyncIterator[str]) -> Response:
    if isinstance(result, BaseModel):
        return JSONResponse(rendering.body(result))
    return StreamingResponse(result, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@serve.ingress(api)
class Ingress:
    def __init__(self, engine: Any, profile: TwinProfile, config: ServingSettings, deps: ServingDeps) -> None:
        self.service = build_service(profile, config, deps, _HandleEngine(engine))
        self.service.rag.warm_up()

    def _auth(self, route: str, model: str, credentials: HTTPAuthorizationCredentials | None) -> None:
        header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
        self.service.authenticate(route, model, header)

    @api.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        responses=_GENERATION,
    )
    async def chat(self, body: ChatCompletionRequest, credentials: Credentials = None) -> Response:
        self._auth("chat", body.model, credentials)
        return _respond(await self.service.chat(body, uuid.uuid4().hex))

    @api.post(
        "/v1/completions",
        response_model=Completion,
        responses=_GENERATION,
    )
    async def completions(self, body: CompletionRequest, credentials: Credentials = None) -> Response:
        self._auth("completions", body.model, credentials)
        return _respond(await self.service.completions(body, uuid.uuid4().hex))

    @api.post("/v1/embeddings", response_model=EmbeddingList, responses=_ERRORS)
    async def embeddings(self, body: EmbeddingRequest, credentials: Credentials = None) -> Response:
        self._auth("embeddings", body.model, credentials)
        return _respond(await self.service.embeddings(body, uuid.uuid4().hex))

    @api.get("/v1/models", response_model=ModelList, responses=_ERRORS)
    async def models(self, credentials: Credentials = None) -> Response:
        self._auth("models", "", credentials)
        return _respond(await self.service.models())

    @api.get("/health", response_class=PlainTextResponse)
    async def health(self) -> str:
        return "ok"

    @api.get(
        "/ready",
        response_model=ReadyStatus,
        responses={503: {"model": ReadyStatus, "description": "Not ready yet"}},
    )
    async def ready(self) -> Response:
        status = ReadyStatus(**dataclasses.asdict(await self.service.engine.status()))
        return JSONResponse(rendering.body(status), status_code=200 if status.ready else 503)

    @api.get("/metrics", response_class=PlainTextResponse)
    async def metrics(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def build_app(profile: TwinProfile, config: ServingSettings, deps: ServingDeps) -> Any:
    """The bound Serve application for ``profile``: ``deps``' factories are called in the replicas."""
    spec = profile.spec.serving
    autoscaling = {
        "min_replicas": spec.min_replicas,
        "max_replicas": max(spec.max_replicas, spec.min_replicas, 1),
        "target_ongoing_requests": spec.target_ongoing_requests,
    }
    if spec.min_replicas == 0:
        autoscaling["initial_replicas"] = 1  # scale to zero when idle, but start with one
    deployment: Any = serve.deployment  # typed for decorator use; called directly here
    engine = deployment(
        EngineServer,
        name="engine",
        autoscaling_config=autoscaling,
        max_ongoing_requests=config.max_ongoing_requests,
        ray_actor_options={"num_cpus": config.engine_cpus, "num_gpus": config.engine_gpus},
        health_check_period_s=10,
        health_check_timeout_s=60,
    ).bind(profile, config, deps.engine, deps.registry)
    return deployment(
        Ingress,
        name="ingress",
        autoscaling_config={**autoscaling, "min_replicas": max(1, spec.min_replicas)},
        max_ongoing_requests=config.max_ongoing_requests,
        ray_actor_options={"num_cpus": config.ingress_cpus},
    ).bind(engine, profile, config, deps)
