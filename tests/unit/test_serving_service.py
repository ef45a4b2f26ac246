"""The Serve pipeline's logic in-process, on fakes of its expensive ports (see
``tests/support/serving_fakes.py``): the ingress service and the engine deployment wired exactly
as the Serve deployments wire them (:func:`twin.serving.service.build_service`, the engine
deployment as the service's :class:`~twin.serving.service.EngineClient`), with an injected engine.

Beside, never instead of, ``tests/integration/test_serve_api.py`` (real engines, real stores, the
real openai client).
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from pydantic import SecretStr

from support.fake_embedder import HashingEmbedder
from support.fake_registry import FakeRegistry
from support.serving_fakes import (
    CHUNKS,
    REPLY,
    FakeChatEngine,
    FixedRetriever,
    MemoryRequestLog,
    NoLinks,
    fake_retriever,
)
from support.twin_cli import SAMPLE_PROFILE
from twin.domain.generation import (
    ChatTurn,
    EngineDelta,
    GenerationFailure,
    GenerationParams,
    GenerationRequest,
    GenerationStart,
    Selector,
    footer_fits,
)
from twin.domain.profile import TwinProfile, parse_profile
from twin.domain.prompts import Source, citations_block
from twin.domain.registry import CHAMPION
from twin.ports import ServingDeps
from twin.serving.engine_server import EngineServer
from twin.serving.schemas import ApiError, ChatCompletion, ChatCompletionRequest, EmbeddingRequest
from twin.serving.service import TwinService, build_service
from twin.settings import ServingSettings

KEY = "unit-key"
T = TypeVar("T")
FOOTER = citations_block([Source(title, url, text) for title, url, text in CHUNKS])


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass
class Served:
    service: TwinService
    server: EngineServer
    engine: FakeChatEngine
    registry: FakeRegistry
    log: MemoryRequestLog
    profile: TwinProfile


def _register(registry: FakeRegistry, profile: TwinProfile, adapter: Path, alias: str | None) -> int:
    with registry.training_run(profile.name, adapter.name, params={}, tags={}) as tr:
        tr.log_adapter(adapter)
    figures = {"base_model": profile.spec.base_model}
    return registry.register(profile.name, tr.run_id, figures, aliases=[alias] if alias else []).version


@pytest.fixture
def served(tmp_path: Path) -> Served:
    profile = parse_profile(yaml.safe_load(SAMPLE_PROFILE.read_text()))
    registry = FakeRegistry()
    for n in (1, 2):
        adapter = tmp_path / f"adapter-{n}"
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text("{}")
        _register(registry, profile, adapter, CHAMPION if n == 1 else None)
    config = ServingSettings(
        api_keys=[SecretStr(KEY)],
        adapter_cache_dir=tmp_path / "cache",
        registry_poll_s=3600,
        max_prompt_tokens=256,
    )
    return _serve(profile, config, registry)


def _serve(profile: TwinProfile, config: ServingSettings, registry: FakeRegistry) -> Served:
    engine, log = FakeChatEngine(), MemoryRequestLog()
    deps = ServingDeps(
        engine=lambda: engine,
        registry=lambda: registry,
        embedder=HashingEmbedder,
        retriever=fake_retriever(FixedRetriever()),
        link_reader=NoLinks,
        request_log=lambda: log,
        api_keys=lambda: [KEY],
    )
    server = EngineServer(profile, config, deps.engine, deps.registry)
    return Served(build_service(profile, config, deps, server), server, engine, registry, log, profile)


def ask(served: Served, **fields: Any) -> ChatCompletion:
    twin = fields.pop("twin", {})
    req = ChatCompletionRequest.model_validate(
        {
            "model": "twin-alice",
            "messages": [{"role": "user", "content": "How do I make a pipeline safe to run twice?"}],
            "temperature": 0,
            "twin": twin,
            **fields,
        }
    )
    reply = run(served.service.chat(req, "req-1"))
    assert isinstance(reply, ChatCompletion)
    return reply


def content(reply: ChatCompletion) -> str:
    return reply.choices[0].message.content


def test_content_is_the_models_output_and_the_sources_are_citations(served: Served) -> None:
    reply = ask(served, max_tokens=64)
    assert content(reply) == REPLY and "Sources:" not in content(reply)
    assert [c.url for c in reply.twin.citations] == [url for _, url, _ in CHUNKS]
    assert reply.twin.model_version == 1 and reply.twin.alias == CHAMPION
    assert reply.usage.completion_tokens == len(REPLY.split())
    _, params, adapter = served.engine.requests[-1]
    assert adapter is not None and adapter.version == 1 and params.max_tokens == 64


def test_inline_sources_only_where_max_tokens_and_stop_still_hold(served: Served) -> None:
    words, footer = len(REPLY.split()), len(FOOTER.split())
    inline = {"inline_citations": True}
    room = ask(served, max_tokens=words + footer, twin=inline)
    assert content(room) == REPLY + FOOTER and room.choices[0].finish_reason == "stop"
    assert room.usage.completion_tokens == words  # the footer is not generated
    # One token short: the answer stands alone rather than break max_tokens.
    assert content(ask(served, max_tokens=words + footer - 1, twin=inline)) == REPLY
    # Cut at max_tokens: nothing is added to an unfinished answer.
    cut = ask(served, max_tokens=3, twin=inline)
    assert content(cut) == "Keyed writes make" and cut.choices[0].finish_reason == "length"
    # Stopped by the client's stop sequence: the sources follow, since none contains it...
    stopped = ask(served, max_tokens=64, stop=["Replays"], twin=inline)
    assert content(stopped) == REPLY[: REPLY.index("Replays")] + FOOTER
    # ...but never where the footer itself would carry a stop sequence into the content.
    assert content(ask(served, max_tokens=64, stop=["Dead"], twin=inline)) == REPLY
    for reply, limit in ((room, words + footer), (stopped, 64), (cut, 3)):
        assert served.engine.count_tokens(content(reply)) <= limit


def test_the_inline_setting_is_a_default_the_request_overrides(served: Served, tmp_path: Path) -> None:
    config = served.service.config.model_copy(update={"inline_citations": True})
    on = _serve(served.profile, config, served.registry)
    assert content(ask(on, max_tokens=64)) == REPLY + FOOTER
    assert content(ask(on, max_tokens=64, twin={"inline_citations": False})) == REPLY


def test_a_streamed_answer_says_what_a_whole_one_says(served: Served) -> None:
    import json

    req = ChatCompletionRequest.model_validate(
        {
            "model": "twin-alice",
            "messages": [{"role": "user", "content": "How do I make a pipeline safe to run twice?"}],
            "max_tokens": 64,
            "stream": True,
            "stream_options": {"include_usage": True},
            "twin": {"inline_citations": True},
        }
    )

    async def events() -> list[str]:
        stream = await served.service.chat(req, "req-2")
        assert not isinstance(stream, ChatCompletion)
        return [e async for e in stream]

    raw = run(events())
    assert raw[-1] == "data: [DONE]\n\n"
    chunks = [json.loads(e.removeprefix("data: ")) for e in raw[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == REPLY + FOOTER
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finals) == 1 and finals[0]["twin"]["citations"] and "twin" not in chunks[0]
    assert chunks[-1]["usage"]["completion_tokens"] == len(REPLY.split()) and "usage" not in chunks[0]


def test_models_list_every_embedding_model_embeddings_accept(served: Served) -> None:
    listing = run(served.service.models())
    ids = [card.id for card in listing.data]
    assert ids[:2] == [served.profile.spec.base_model, "twin-alice"]
    assert {"twin-alice@champion", "twin-alice@1", "twin-alice@2"} <= set(ids)
    embedding = [card.id for card in listing.data if card.kind == "embedding"]
    assert (
        embedding == served.service.embedding_models() == ["hashing-384", "sentence-transformers/hashing-384"]
    )
    for model in embedding:
        got = run(served.service.embeddings(EmbeddingRequest(model=model, input=["a", "b"]), "e"))
        assert [len(d.embedding) for d in got.data] == [384, 384]
    with pytest.raises(ApiError) as missing:
        run(served.service.embeddings(EmbeddingRequest(model="text-embedding-3-small", input="x"), "e"))
    assert missing.value.status == 404 and missing.value.param == "model"


def test_the_engine_seam_carries_typed_events(served: Served) -> None:
    async def events(request: GenerationRequest) -> list[Any]:
        stream: AsyncIterator[Any] = served.server.generate(request)
        return [e async for e in stream]

    def request(selector: Selector, prompt: str = "a b c") -> GenerationRequest:
        return GenerationRequest("r", selector, GenerationParams(max_tokens=4), prompt=prompt)

    got = run(events(request(Selector(alias=CHAMPION))))
    assert got[0] == GenerationStart(prompt_tokens=3, model_version=1)
    assert all(isinstance(e, EngineDelta) for e in got[1:]) and got[-1].finish_reason == "length"
    assert run(events(request(Selector(version=2))))[0] == GenerationStart(prompt_tokens=3, model_version=2)
    assert run(events(request(Selector(base=True))))[0].model_version is None
    missing = run(events(request(Selector(version=9))))
    assert len(missing) == 1 and (missing[0].status, missing[0].param) == (404, "model")
    long = run(events(request(Selector(base=True), prompt="word " * 257)))
    assert long == [GenerationFailure(400, "the prompt is 257 tokens; the limit is 256", "prompt")]
    # They cross a Ray Serve handle: every value pickles back to itself.
    chat = GenerationRequest(
        "r", Selector(), GenerationParams(1), messages=(ChatTurn("user", "hi"),), footer="x"
    )
    for value in [chat, *got, *missing]:
        assert pickle.loads(pickle.dumps(value)) == value
    with pytest.raises(ValueError, match="either messages or a prompt"):
        GenerationRequest("r", Selector(), GenerationParams(1))


def test_refusals_are_openai_errors_counted_in_the_log(served: Served) -> None:
    with pytest.raises(ApiError) as denied:
        served.service.authenticate("chat", "twin-alice", "Bearer not-the-key")
    assert denied.value.status == 401
    served.service.authenticate("chat", "twin-alice", f"Bearer {KEY}")
    for model, status in (("twin-bob", 404), ("twin-alice@nope!", 404)):
        with pytest.raises(ApiError) as refused:
            ask(served, model=model)
        assert refused.value.status == status
    with pytest.raises(ApiError) as too_many:
        ask(served, max_tokens=100_000)
    assert (too_many.value.status, too_many.value.param) == (400, "max_tokens")
    ask(served, max_tokens=4)
    assert [r.status for r in served.log.records] == [401, 404, 404, 400, 200]
    answered = served.log.records[-1]
    assert answered.model_version == 1 and answered.completion_tokens == 4 and answered.chunk_ids


def test_hot_swap_unloads_the_old_adapter_once_idle(served: Served) -> None:
    async def swap() -> None:
        await served.server.sync()
        assert served.server.current is not None and served.server.current.version == 1
        served.registry.set_alias("alice", CHAMPION, 2)
        await served.server.sync()
        assert served.server.current.version == 2 and served.engine.loaded == ["alice-v1", "alice-v2"]
        request = GenerationRequest("r", Selector(base=True), GenerationParams(max_tokens=1), prompt="x")
        _ = [e async for e in served.server.generate(request)]  # a finished request unloads idle ones

    run(swap())
    assert served.engine.unloaded == ["alice-v1"] and served.engine.loaded == ["alice-v2"]


def test_the_footer_rule() -> None:
    def fits(**change: Any) -> bool:
        args: dict[str, Any] = {
            "finish_reason": "stop",
            "stop": (),
            "generated_tokens": 5,
            "footer_tokens": 5,
            "max_tokens": 10,
        }
        return footer_fits("an answer", "\n\nSources:\n[1] t — u", **{**args, **change})

    assert fits()
    assert not fits(finish_reason="length")  # cut answers get nothing more
    assert not fits(max_tokens=9)  # 5 generated + 5 footer > 9
    assert not fits(stop=("Sources",))  # the content would carry a stop sequence
    assert fits(stop=("STOP",))
    assert not footer_fits(
        "x", "", finish_reason="stop", stop=(), generated_tokens=0, footer_tokens=0, max_tokens=1
    )
