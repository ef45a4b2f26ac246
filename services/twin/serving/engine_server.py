"""The engine deployment: one chat engine, the adapters the registry names, and hot swap.

It is built from factories (:class:`twin.ports.ServingDeps`: ``engine`` and ``registry``), called
in the replica, so the engine loads where it runs and a test can hand in its own. The ingress
talks to it through :class:`twin.serving.service.EngineClient`: a typed
:class:`~twin.domain.generation.GenerationRequest` in, typed events out (see
:mod:`twin.domain.generation`), the same whether it is called in-process (the benchmark, unit
tests) or through a Ray Serve handle. The deployment turns a request into what the one engine
protocol (:class:`twin.ports.ChatEngine`) takes: which adapter, the prompt's token ids (the
engine's chat template), the limits; the engine only generates.

Hot swap: a background task checks the serving alias (``champion``) every ``registry_poll_s``;
when it moves (a promotion, a rollback), the new version is downloaded, loaded into the running
engine, and only then becomes what ``twin-<profile>`` answers with: requests already generating
keep the adapter they started with, and an adapter is unloaded only when no request uses it. So a
swap takes at most one poll interval plus a load, with no restart and no failed request.

The inline sources (a request's ``footer``) are appended here, where the engine's tokenizer can
count them: after the answer's last piece, only where :func:`~twin.domain.generation.footer_fits`
says the client's ``max_tokens`` and ``stop`` still hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable

from twin.domain.generation import (
    AdapterRef,
    EngineDelta,
    EngineStatus,
    GenerationEvent,
    GenerationFailure,
    GenerationRequest,
    GenerationStart,
    Selector,
    ServedModels,
    ServedVersion,
    footer_fits,
)
from twin.domain.profile import TwinProfile
from twin.ports import ChatEngine, ModelRegistry
from twin.serving.registry import AdapterCache
from twin.settings import ServingSettings

log = logging.getLogger(__name__)


class EngineServer:
    def __init__(
        self,
        profile: TwinProfile,
        config: ServingSettings,
        engine: Callable[[], ChatEngine],
        registry: Callable[[], ModelRegistry],
    ) -> None:
        self.profile = profile
        self.config = config
        self.base_model = profile.spec.base_model
        self.engine = engine()
        self.cache = AdapterCache(registry(), profile.name, self.base_model, config.adapter_cache_dir)
        self.current: AdapterRef | None = None  # what the serving alias points at, loaded
        self.last_sync_error: str | None = None
        self._synced = asyncio.Event()  # the first registry sync finished (ready)
        self._watcher: asyncio.Task[None] | None = None
        self._in_use: Counter[str] = Counter()
        self._retired: dict[str, AdapterRef] = {}  # swapped out, unloaded once idle
        self._extra: dict[int, AdapterRef] = {}  # versions asked for by number or another alias

    @property
    def ready(self) -> bool:
        return self._synced.is_set()

    # ------------------------------------------------------------------------------- hot swap

    def _ensure_watcher(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            try:
                await self.sync()
                self.last_sync_error = None
            except Exception as exc:  # keep serving what is loaded; try again next poll
                self.last_sync_error = f"{type(exc).__name__}: {exc}"
                log.warning("registry sync failed: %s", self.last_sync_error)
            self._synced.set()
            await asyncio.sleep(self.config.registry_poll_s)

    async def sync(self) -> None:
        """Follow the serving alias: load the version it names, then switch to it."""
        info = await asyncio.to_thread(self.cache.resolve, Selector(alias=self.config.alias))
        if info is None:
            if self.current is not None:  # the alias was removed: back to the base model
                self._retired[self.current.name] = self.current
                self.current = None
            return
        if self.current is not None and self.current.version == info.version:
            return
        ref = await asyncio.to_thread(self.cache.fetch, info)
        await self.engine.load_adapter(ref)
        previous, self.current = self.current, ref
        log.info(
            "serving %s version %d (was %s)", self.profile.name, ref.version, previous and previous.version
        )
        if previous is not None:
            self._retired[previous.name] = previous

    async def _unload_idle(self) -> None:
        for name, ref in list(self._retired.items()):
            if not self._in_use[name] and (self.current is None or ref.name != self.current.name):
                del self._retired[name]
                await self.engine.unload_adapter(ref)

    async def _adapter_for(self, selector: Selector) -> tuple[AdapterRef | None, str | None]:
        """(adapter, why not): the loaded adapter a selector names now."""
        if selector.base:
            return None, None
        if selector.alias == self.config.alias and selector.version is None:
            await self._synced.wait()  # the first sync has not finished: wait, do not guess
            return self.current, None
        info = await asyncio.to_thread(self.cache.resolve, selector)
        if info is None:
            what = (
                f"version {selector.version}" if selector.version is not None else f"alias {selector.alias!r}"
            )
            return None, f"model {self.profile.name} has no {what}"
        cached = self._extra.get(info.version)
        ref = cached if cached is not None else await asyncio.to_thread(self.cache.fetch, info)
        await self.engine.load_adapter(ref)
        self._extra[info.version] = ref
        return ref, None

    # ---------------------------------------------------------------------------- generation

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """A start (or a failure), then the engine's pieces; see :mod:`twin.domain.generation`."""
        self._ensure_watcher()
        try:
            adapter, missing = await self._adapter_for(request.selector)
        except Exception as exc:
            yield GenerationFailure(503, f"the adapter could not be loaded: {exc}")
            return
        if missing is not None:
            yield GenerationFailure(404, missing, "model")
            return
        chat = request.prompt is None
        ids = (
            self.engine.chat_prompt(request.messages)
            if chat
            else self.engine.text_prompt(request.prompt or "")
        )
        if len(ids) > self.config.max_prompt_tokens:
            limit = self.config.max_prompt_tokens
            message = f"the prompt is {len(ids)} tokens; the limit is {limit}"
            yield GenerationFailure(400, message, "messages" if chat else "prompt")
            return
        # The context window bounds the completion: clamp rather than fail (finish_reason says length).
        room = max(1, min(request.params.max_tokens, self.config.max_model_len - len(ids)))
        params = dataclasses.replace(request.params, max_tokens=room)
        yield GenerationStart(prompt_tokens=len(ids), model_version=adapter.version if adapter else None)
        name = adapter.name if adapter else ""
        self._in_use[name] += 1
        try:
            deltas = self.engine.generate(ids, params, adapter, request.request_id)
            async for delta in self._with_footer(request, deltas):
                yield delta
        finally:
            self._in_use[name] -= 1
            await self._unload_idle()

    async def _with_footer(
        self, request: GenerationRequest, deltas: AsyncIterator[EngineDelta]
    ) -> AsyncIterator[EngineDelta]:
        """The engine's pieces, and the request's footer after the last one where it fits."""
        text: list[str] = []
        tokens = 0
        async for delta in deltas:
            if not request.footer or delta.finish_reason is None:
                text.append(delta.text)
                tokens += delta.tokens
                yield delta
                continue
            fits = footer_fits(
                "".join(text) + delta.text,
                request.footer,
                finish_reason=delta.finish_reason,
                stop=request.params.stop,
                generated_tokens=tokens + delta.tokens,
                footer_tokens=self.engine.count_tokens(request.footer),
                max_tokens=request.params.max_tokens,
            )
            if not fits:
                yield delta
                continue
            yield dataclasses.replace(delta, finish_reason=None)
            yield EngineDelta(request.footer, 0, delta.finish_reason)  # no generated tokens

    async def models(self) -> ServedModels:
        """The base model and every registered version with its aliases, for ``GET /v1/models``."""
        self._ensure_watcher()
        versions = await asyncio.to_thread(self.cache.versions)
        return ServedModels(
            base_model=self.base_model,
            alias=self.config.alias,
            current=self.current.version if self.current else None,
            versions=tuple(ServedVersion(v.version, tuple(v.aliases)) for v in versions),
        )

    async def status(self) -> EngineStatus:
        self._ensure_watcher()
        return EngineStatus(
            ready=self.ready,
            engine=self.engine.name,
            base_model=self.base_model,
            model_version=self.current.version if self.current else None,
            registry_error=self.last_sync_error,
            quantization=self.engine.quantization,
        )

    async def check_health(self) -> None:
        """Ray Serve's health check: also (re)starts the registry watcher."""
        self._ensure_watcher()

    def __del__(self) -> None:
        # Ray Serve calls this when the replica stops: vLLM's engine-core process must go with it.
        engine = getattr(self, "engine", None)
        if engine is not None:
            with contextlib.suppress(Exception):  # interpreter teardown: nothing left to do
                engine.close()
