"""Session-wide ``twin serve`` servers for the serving suites: a pytest plugin, named in each serving
test module's ``pytest_plugins``.

One server per engine (the session-scoped ``serve_engine`` parameter: ``transformers``, ``vllm``),
each with its own MLflow registry (two adapters: v1 the champion, v2 not) on the session's
Postgres with the sample writing embedded. The shared suite (``test_serve_api.py``, parametrized
over both engines) and the engine-specific modules (``test_serve_vllm.py``,
``test_serve_transformers.py``) use the same instance, so each engine starts once per session.
pytest runs a session parameter's tests together, and at most one server is alive at a time: the
pool stops it before another starts and as soon as the next test needs none (a server holds
gigabytes and Ray's processes; the tests after it should not share the machine with it).

The two servers differ only where the engine does: the transformers one gets less context per
prompt (it prefills without batching), and the vLLM one logs prompts while the transformers one
keeps the default (off), so the request-log test checks both settings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.hostile import HostileSite
from support.processes import free_port
from support.serving import (
    BASE_MODEL,
    KEY,
    Served,
    local_registry,
    make_adapter,
    register,
    seed_profiles,
    twin_server,
)
from support.twin_cli import SAMPLE_PROFILE
from twin.demo.server import SiteServer

ENGINES = ("transformers", "vllm")


class _Pool:
    """At most one live server: (engine, served, what stops it)."""

    def __init__(self) -> None:
        self.live: tuple[str, Served, contextlib.ExitStack] | None = None

    def get(self, engine: str, start: Callable[[], contextlib.AbstractContextManager[Served]]) -> Served:
        if self.live is not None and self.live[0] == engine:
            return self.live[1]
        self.stop()
        stack = contextlib.ExitStack()
        served = stack.enter_context(start())
        self.live = (engine, served, stack)
        return served

    def stop(self) -> None:
        if self.live is not None:
            stack, self.live = self.live[2], None
            stack.close()


_POOL = _Pool()


@pytest.fixture(scope="session", params=ENGINES)
def serve_engine(request: pytest.FixtureRequest) -> str:
    """The engine under test; a module runs on one engine with
    ``@pytest.mark.parametrize("serve_engine", ["vllm"], indirect=True)``."""
    engine: str = request.param
    return engine


@pytest.fixture(scope="session")
def serve_hostile() -> Iterator[SiteServer]:
    """A site of good and bad pages for the link-reading tests."""
    with SiteServer(HostileSite(huge_bytes=3_000_000)) as server:
        yield server


@pytest.fixture(scope="session")
def serve_base_path() -> str:
    """The base model on local disk (converted once and cached)."""
    from twin.adapters.hf_models import resolve_base_model
    from twin.settings import Settings

    return resolve_base_model(BASE_MODEL, Settings().training.model_cache_dir)


@pytest.fixture(scope="session")
def serve_adapters(tmp_path_factory: pytest.TempPathFactory, serve_base_path: str) -> list[Path]:
    """Two different LoRA adapters, made once for every server."""
    root = tmp_path_factory.mktemp("serve-adapters")
    return [make_adapter(serve_base_path, root / f"a{seed}", seed=seed) for seed in (1, 2)]


@pytest.fixture(scope="session")
def serve_corpus(pg_dsn: str) -> dict[str, Any]:
    """Alice's writing and Bob's, embedded in the session's feature store."""
    return seed_profiles(pg_dsn)


@contextlib.contextmanager
def _start(engine: str, dsn: str, adapters: list[Path], home: Path) -> Iterator[Served]:
    registry = local_registry(home)
    versions = {
        "v1": register(registry, "alice", adapters[0], alias="champion"),
        "v2": register(registry, "alice", adapters[1]),
    }
    env = {
        "TWIN_DATABASE__DSN": dsn,
        "TWIN_HOME": str(home),
        "TWIN_SERVING__API_KEYS": f'["{KEY}"]',
        "TWIN_SERVING__ENGINE": engine,
        "TWIN_SERVING__REGISTRY_POLL_S": "1",
        "TWIN_SERVING__MAX_TOKENS_LIMIT": "256",
        "TWIN_SERVING__DEFAULT_MAX_TOKENS": "4",
        "TWIN_SERVING__ADAPTER_CACHE_DIR": str(home / "adapters"),
        "TWIN_CRAWLER__ALLOWED_NETWORKS": '["127.0.0.1/32"]',
        "TWIN_TEST_KEY": KEY,
    }
    if engine == "transformers":
        env["TWIN_SERVING__RAG_MAX_CONTEXT_CHARS"] = "800"
    else:
        env["TWIN_SERVING__LOG_PROMPTS"] = "true"
    with twin_server(SAMPLE_PROFILE, env, home, free_port()) as server:
        yield Served(engine, server, versions, log_prompts=engine == "vllm")


@pytest.fixture
def served(
    serve_engine: str,
    pg_dsn: str,
    serve_corpus: dict[str, Any],
    serve_adapters: list[Path],
    serve_hostile: SiteServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Served:
    """The running server of ``serve_engine`` (started on first use, see the module docstring)."""

    def start() -> contextlib.AbstractContextManager[Served]:
        return _start(serve_engine, pg_dsn, serve_adapters, tmp_path_factory.mktemp(f"serve-{serve_engine}"))

    return _POOL.get(serve_engine, start)


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if nextitem is None or "served" not in getattr(nextitem, "fixturenames", ()):
        _POOL.stop()
