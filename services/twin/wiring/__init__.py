"""The composition root: the only place that turns :class:`~twin.settings.Settings` into adapters.

Entry points (the ``twin`` CLI, the Ray Serve deployments' factories, later the operator and
``twin up``) call these functions; the pipelines (crawler, features, training, serving) receive
the ports they return plus plain configuration, and never see ``Settings``. So a pipeline can be
composed another way (a Kubernetes Job, a supervisor, a test with a fake) without touching it,
and "which technology runs here" is decided in exactly one module.

Nothing here connects at import time; each function builds what it names when called. Heavy
libraries are imported inside the functions that need them (a crawl Job never imports torch).

The functions live in one module per concern (:mod:`.stores`, :mod:`.runtime`, :mod:`.features`,
:mod:`.crawler`, :mod:`.training`, :mod:`.serving`, :mod:`.operator`); callers use them from here.
"""

from __future__ import annotations

from twin.wiring.crawler import address_guard, extract_options, link_reader
from twin.wiring.features import change_feed, embedder, feature_deps, maintain_indexes, ray_embedder
from twin.wiring.operator import profile_data
from twin.wiring.runtime import ensure_ray, ray_is_local
from twin.wiring.serving import (
    chat_engine,
    chat_engine_factory,
    engine_choice,
    load_api_keys,
    request_log,
    retriever_factory,
    serving_deps,
    validate_serving,
)
from twin.wiring.stores import (
    connection,
    database_dsn,
    document_store,
    embedded_postgres,
    feature_store,
    retriever,
)
from twin.wiring.training import base_model_path, instruction_generator, judge, model_registry, training_deps

__all__ = [
    "address_guard",
    "base_model_path",
    "change_feed",
    "chat_engine",
    "chat_engine_factory",
    "connection",
    "database_dsn",
    "document_store",
    "embedded_postgres",
    "embedder",
    "engine_choice",
    "ensure_ray",
    "extract_options",
    "feature_deps",
    "feature_store",
    "instruction_generator",
    "judge",
    "link_reader",
    "load_api_keys",
    "maintain_indexes",
    "model_registry",
    "profile_data",
    "ray_embedder",
    "ray_is_local",
    "request_log",
    "retriever",
    "retriever_factory",
    "serving_deps",
    "training_deps",
    "validate_serving",
]
